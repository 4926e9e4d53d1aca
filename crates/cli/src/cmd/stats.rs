//! `zgrid stats`: subscribe to the Redis channel a container's node publishes its statistics to
//! (every 2 s) and print them: CPU as a share of one core since the previous message, memory in
//! use, page cache, the limit, and processes. With `--json`, each message as it came, one per
//! line.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use zgrid_types::workload::{StatsEndpoint, redis_channel};

use crate::args::StatsArgs;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, a: StatsArgs) -> Result<()> {
    let (id, container) = super::container(ctx, &a.id).await?;
    let Some(StatsEndpoint::Redis(endpoint)) = container.stats.first() else {
        bail!("container {id} publishes no statistics; deploy it with --stats redis://HOST:PORT/CHANNEL");
    };
    let (server, channel) = redis_channel(&endpoint.endpoint)
        .with_context(|| format!("{:?} is not a redis://host:port/channel URL", endpoint.endpoint))?;
    // The server URL may hold a password: name only its host and port.
    let address = url::Url::parse(&server)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(6379))))
        .unwrap_or_default();
    let redis = redis::Client::open(server.as_str()).context("the stats endpoint")?;
    let mut pubsub = redis.get_async_pubsub().await.with_context(|| {
        format!("cannot reach Redis at {address}, where container {id} publishes its statistics; is it running, and reachable from here?")
    })?;
    pubsub.subscribe(&channel).await?;
    if !ctx.json {
        eprintln!("waiting for statistics on {channel} (every 2 s)");
        println!("{:>10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>5}", "time", "cpu %", "memory", "cache", "limit", "pids");
    }
    let mut messages = pubsub.on_message();
    let mut previous: Option<(i64, u64)> = None;
    let mut seen = 0;
    while let Some(message) = messages.next().await {
        let text: String = message.get_payload()?;
        if ctx.json {
            println!("{text}");
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).context("a statistics message is not JSON")?;
            let (at, cpu) = (v["timestamp"].as_i64().unwrap_or(0), v["cpu_usage"].as_u64().unwrap_or(0));
            // cpu_usage counts 10 µs units: 100 000 per second of one core.
            let share = match previous {
                Some((t, c)) if at > t => format!("{:.1}", (cpu.saturating_sub(c)) as f64 / 1000.0 / (at - t) as f64),
                _ => "-".into(),
            };
            previous = Some((at, cpu));
            let mib = |key: &str| {
                v[key].as_u64().map_or("-".into(), |b| {
                    if b == u64::MAX { "none".into() } else { format!("{:.1} MiB", b as f64 / 1048576.0) }
                })
            };
            println!(
                "{:>10}  {share:>6}  {:>10}  {:>10}  {:>10}  {:>5}",
                chrono::DateTime::from_timestamp(at, 0)
                    .map_or_else(|| at.to_string(), |t| t.format("%H:%M:%S").to_string()),
                mib("memory_usage"),
                mib("memory_cache"),
                mib("memory_limit"),
                v["pids_current"]
            );
        }
        seen += 1;
        if a.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}
