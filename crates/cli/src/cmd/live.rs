//! `zgrid live`: my workloads, newest first, their network addresses (public ones too), their
//! state and the nodes' latest results (node ids shortened like git's; `--json` has them
//! whole); every one, read page after page.

use anyhow::Result;
use zgrid_types::api::WorkloadFilter;
use zgrid_types::{ResultState, WorkloadData};

use crate::args::LiveArgs;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, a: LiveArgs) -> Result<()> {
    let (client, identity) = ctx.signed_client()?;
    let filter = WorkloadFilter {
        owner: Some(Ctx::user_id(&identity)?),
        state: (a.state != "all").then_some(a.state),
        after: None,
        size: Some(a.list.size),
    };
    let records = client.all_workloads_matching(&filter, a.list.limit).await?;
    if ctx.json {
        return output::json(&serde_json::json!({ "items": records, "total": records.len() }));
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let w = &r.workload.payload;
            let network = match (&w.data, w.data.network_attachment()) {
                (_, Some((name, ip))) => format!("{name} {ip}"),
                (WorkloadData::NetworkResource(n), None) => format!("{} {}", n.name, n.iprange),
                _ => "-".into(),
            };
            // A container's public and Yggdrasil addresses, as its node's result says.
            let outside = ["public_ipv6", "yggdrasil_ip"]
                .iter()
                .filter_map(|key| r.result.as_ref().and_then(|res| res.payload.data[key].as_str()));
            let network = std::iter::once(network.as_str()).chain(outside).collect::<Vec<_>>().join(" ");
            vec![
                w.id.to_string(),
                w.data.kind().to_string(),
                w.version.to_string(),
                short_id(&w.node_id.to_string()),
                network,
                r.state.as_str().into(),
                output::time(w.expires_at),
                result(r),
            ]
        })
        .collect();
    output::table(&["ID", "TYPE", "VER", "NODE", "NETWORK", "STATE", "EXPIRES", "RESULT"], &rows);
    println!("{} workloads", records.len());
    Ok(())
}

/// Characters of a node id `zgrid live` shows.
const SHORT_ID: usize = 8;

/// The first [`SHORT_ID`] characters of `id`.
fn short_id(id: &str) -> String {
    id.chars().take(SHORT_ID).collect()
}

/// The node's latest result, with the restart history of a workload running again after it
/// stopped (`ok (restarted 2 times, last: the container exited with code 1)`).
fn result(record: &zgrid_types::api::WorkloadRecord) -> String {
    let shown = output::result(record);
    let Some(r) = record.result.as_ref().map(|r| &r.payload).filter(|r| r.state == ResultState::Ok) else {
        return shown;
    };
    match (r.data["restarts"].as_u64(), r.data["last_stop"]["reason"].as_str()) {
        (Some(n @ 1..), Some(why)) => {
            let times = if n == 1 { "once".to_owned() } else { format!("{n} times") };
            format!("{shown} (restarted {times}, last: {why})")
        }
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use zgrid_types::api::{WorkloadRecord, WorkloadState};
    use zgrid_types::{Keypair, ResultState, Signed, WorkloadResult};

    fn with_result(state: ResultState, message: &str, data: serde_json::Value) -> WorkloadRecord {
        let key = Keypair::from_seed(&[2; 32]);
        let spec: zgrid_types::WorkloadSpec = serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef", "version": 1, "owner": 1, "owner_key": key.public(),
            "node_id": key.public(), "expires_at": 1, "description": "", "metadata": "",
            "data": { "type": "volume", "size": 100, "disk_type": "ssd" }
        }))
        .unwrap();
        let result = WorkloadResult {
            workload_id: spec.id.clone(),
            version: 1,
            node_id: key.public(),
            state,
            message: message.into(),
            data,
            timestamp: 0,
        };
        WorkloadRecord {
            workload: Signed::sign(spec, &key),
            state: WorkloadState::Active,
            created_at: 0,
            updated_at: 0,
            deletion: None,
            result: Some(Signed::sign(result, &key)),
        }
    }

    #[test]
    fn a_workload_running_again_shows_how_often_and_why_it_stopped() {
        let last = serde_json::json!({ "reason": "the container exited with code 1", "exit_code": 1 });
        let again = with_result(ResultState::Ok, "", serde_json::json!({ "restarts": 3, "last_stop": last }));
        assert_eq!(super::result(&again), "ok (restarted 3 times, last: the container exited with code 1)");
        let fresh = with_result(ResultState::Ok, "", serde_json::json!({ "restarts": 0 }));
        assert_eq!(super::result(&fresh), "ok");
        let failed = with_result(ResultState::Error, "the container exited with code 1; restarting (1/5)", last);
        assert_eq!(super::result(&failed), "error: the container exited with code 1; restarting (1/5)");
    }

    #[test]
    fn node_ids_are_shortened_like_git() {
        assert_eq!(super::short_id("9vNoDeIdIsLong"), "9vNoDeId");
        assert_eq!(super::short_id("abc"), "abc");
    }
}
