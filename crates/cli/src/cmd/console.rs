//! `zgrid console`: an interactive container's console, spoken to directly at
//! `http://<container ip>:7681` (so from a machine on the container's private network, such as
//! one joined with `zgrid network add-access`). On a terminal it starts a shell in the
//! container (or, with `--attach N`, takes over process N) and attaches this terminal to it
//! (`interactive`); elsewhere, or with `--list`, it lists the container's processes and the
//! console's URL. With `--send` it starts a shell, types the lines, and prints what the
//! terminal shows, as plain text, until the shell exits.

mod interactive;
mod plain;

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use zgrid_client::ClientError;

use crate::args::ConsoleArgs;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, a: ConsoleArgs) -> Result<()> {
    let (id, container) = super::container(ctx, &a.id).await?;
    let Some(connection) = container.network_connection.first().filter(|_| container.interactive) else {
        bail!("container {id} has no console; deploy it with --interactive --network NAME");
    };
    let base = format!("{}:{}", connection.ipaddress, zgrid_node::console::PORT);
    let unreachable = || {
        format!(
            "cannot reach the console at http://{base}: it answers only on network {:?}; join it with `zgrid network add-access`",
            connection.network_id
        )
    };
    let http = ctx.http()?;
    // A refusal is the console's answer; anything else means it was not reached.
    let ask = async |method, url: String| -> Result<serde_json::Value> {
        match http.fetch("console", method, &url).await {
            Err(e @ ClientError::Api { .. }) => Err(e.into()),
            answer => Ok(answer.with_context(unreachable)?.json().await?),
        }
    };
    let start = async || -> Result<u64> {
        let program = url::form_urlencoded::byte_serialize(a.program.as_bytes()).collect::<String>();
        let started = ask(reqwest::Method::POST, format!("http://{base}/api/process/start?arg[]={program}")).await?;
        started["id"].as_u64().context("the console did not say which process it started")
    };
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal() && !ctx.json && !a.list;
    if let Some(send) = &a.send {
        let process = start().await?;
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{base}/api/process/{process}/attach"))
            .await
            .with_context(unreachable)?;
        socket.send(Message::Binary(format!("{send}\nexit\n").into_bytes().into())).await?;
        let mut out = plain::PlainText::new(std::io::stdout().lock());
        while let Some(message) = socket.next().await {
            match message? {
                Message::Binary(bytes) => out.write(&bytes)?,
                Message::Text(text) => out.write(text.as_bytes())?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        return Ok(());
    }
    if a.attach.is_some() || on_terminal {
        if !on_terminal {
            bail!("--attach needs a terminal: run it from one, without --json or --list");
        }
        let process = match a.attach {
            Some(n) => n,
            None => start().await?,
        };
        eprintln!("attached to process {process} of container {id}; Ctrl-] detaches");
        return match interactive::attach(&base, process).await? {
            interactive::Ended::Exited => Ok(()),
            interactive::Ended::Detached => {
                eprintln!("\r\ndetached; process {process} runs on: `zgrid console {id} --attach {process}`");
                Ok(())
            }
        };
    }
    let processes = ask(reqwest::Method::GET, format!("http://{base}/api/processes")).await?;
    output::report(ctx.json, &processes, || {
        println!("console: http://{base}/");
        for p in processes.as_array().into_iter().flatten() {
            let cmdline: Vec<&str> = p["cmdline"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
            let started = p["id"].as_u64().map_or_else(String::new, |n| format!("  (process {n})"));
            println!("{:>8}  {}{started}", p["pid"], cmdline.join(" "));
        }
    })
}
