//! `zgrid network show | graph`, and the summary the other verbs end with.

use anyhow::Result;
use zgrid_client::network::Network;

use super::Session;
use crate::output;

/// Print the network: with `--json` the whole model, else tables of members, access points
/// and the workloads that join it.
fn print(s: &Session, network: &Network) -> Result<()> {
    output::report(s.json, network, || {
        println!("network {} {}", network.name(), network.cidr());
        let members: Vec<Vec<String>> = network
            .members()
            .iter()
            .map(|m| {
                let (id, version, result, expires) = m.record.as_ref().map_or_else(
                    || ("-".into(), "-".into(), "not submitted".into(), "-".into()),
                    |r| {
                        let spec = &r.workload.payload;
                        (
                            spec.id.to_string(),
                            spec.version.to_string(),
                            output::result(r),
                            output::time(spec.expires_at),
                        )
                    },
                );
                vec![m.node_id.to_string(), m.subnet.to_string(), m.reachability(), id, version, result, expires]
            })
            .collect();
        output::table(&["NODE", "SUBNET", "ENDPOINT", "WORKLOAD", "VER", "RESULT", "EXPIRES"], &members);
        if network.members().iter().any(|m| !m.is_public())
            && let Some(relay) = network.relay()
        {
            println!("hidden members reach each other through {}", relay.node_id);
        }
        if !network.access_points().is_empty() {
            println!();
            let rows: Vec<Vec<String>> = network
                .access_points()
                .iter()
                .map(|a| vec![a.subnet.to_string(), a.node_id.to_string(), a.public_key.clone()])
                .collect();
            output::table(&["ACCESS POINT", "THROUGH NODE", "PUBLIC KEY"], &rows);
        }
        if !network.attachments().is_empty() {
            println!();
            let rows: Vec<Vec<String>> = network
                .attachments()
                .iter()
                .map(|a| vec![a.workload_id.to_string(), a.kind.to_string(), a.node_id.to_string(), a.ip.to_string()])
                .collect();
            output::table(&["WORKLOAD", "TYPE", "NODE", "IP"], &rows);
        }
    })
}

/// `zgrid network show`.
pub async fn show(s: &Session, name: &str) -> Result<()> {
    print(s, &s.existing(name).await?)
}

/// `zgrid network graph`: DOT on stdout (with `--json`, `{"dot": "..."}`).
pub async fn graph(s: &Session, name: &str) -> Result<()> {
    let dot = s.existing(name).await?.dot();
    output::report(s.json, &serde_json::json!({ "dot": dot }), || print!("{dot}"))
}

/// End a change: show the network as the explorer has it now (`null` with `--json` once it
/// has no member left).
pub async fn finish(s: &Session, name: &str) -> Result<()> {
    match s.load(name).await? {
        Some(network) => print(s, &network),
        None => output::report(s.json, &serde_json::Value::Null, || println!("network {name} has no member left")),
    }
}
