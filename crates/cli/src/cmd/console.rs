//! `zgrid console`: an interactive container's console, spoken to directly at
//! `http://<container ip>:7681` (so from a machine on the container's private network, such as
//! one joined with `zgrid network add-access`). Without `--send` it lists the container's
//! processes; with it, it starts a shell on a terminal in the container, types the lines, and
//! prints what the terminal shows until the shell exits.

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::args::ConsoleArgs;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, a: ConsoleArgs) -> Result<()> {
    let (id, container) = super::container(ctx, &a.id).await?;
    let Some(connection) = container.network_connection.first().filter(|_| container.interactive) else {
        bail!("container {id} has no console; deploy it with --interactive --network NAME");
    };
    let base = format!("{}:{}", connection.ipaddress, zgrid_node::console::PORT);
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let unreachable = || {
        format!(
            "cannot reach the console at http://{base}: it answers only on network {:?}; join it with `zgrid network add-access`",
            connection.network_id
        )
    };
    let Some(send) = a.send else {
        let processes: serde_json::Value = http
            .get(format!("http://{base}/api/processes"))
            .send()
            .await
            .with_context(unreachable)?
            .json()
            .await
            .with_context(unreachable)?;
        return output::report(ctx.json, &processes, || {
            println!("console: http://{base}/");
            for p in processes.as_array().into_iter().flatten() {
                let cmdline: Vec<&str> =
                    p["cmdline"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
                println!("{:>8}  {}", p["pid"], cmdline.join(" "));
            }
        });
    };
    let started: serde_json::Value = http
        .post(format!(
            "http://{base}/api/process/start?arg[]={}",
            url::form_urlencoded::byte_serialize(a.program.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .with_context(unreachable)?
        .error_for_status()?
        .json()
        .await
        .with_context(unreachable)?;
    let process = started["id"].as_u64().context("the console did not say which process it started")?;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{base}/api/process/{process}/attach"))
        .await
        .with_context(unreachable)?;
    socket.send(Message::Binary(format!("{send}\nexit\n").into_bytes().into())).await?;
    let mut out = std::io::stdout().lock();
    while let Some(message) = socket.next().await {
        match message? {
            Message::Binary(bytes) => out.write_all(&bytes)?,
            Message::Text(text) => out.write_all(text.as_bytes())?,
            Message::Close(_) => break,
            _ => {}
        }
        out.flush()?;
    }
    Ok(())
}
