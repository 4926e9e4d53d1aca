//! Readiness and liveness probes of running containers, run by the agent beside each container
//! the way Kubernetes' kubelet runs them: a TCP connection or an HTTP GET to `127.0.0.1:port`
//! inside the container's network namespace, or a command inside the container (`runc exec`),
//! every `period_seconds` after `initial_delay_seconds`, each within `timeout_seconds`, turned
//! into a verdict by the failure and success thresholds ([`Threshold`]).
//!
//! The container's health check reads the verdicts ([`Prober::verdict`]): readiness goes into
//! its result as `"ready"`, and a failed liveness probe stops it so that the engine starts it
//! again. The probes run as a task of the container: they start with it, start afresh when it
//! is started again, and stop when it is removed.

mod attempt;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use zgrid_types::workload::{Probe, Probes};

use self::attempt::Target;
use crate::runtime::Runtime;

/// What the probes of one container found so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Ok` while the readiness probe passes (always, without one); otherwise why not.
    pub ready: Result<(), String>,
    /// Set once the liveness probe failed `failure_threshold` times in a row: what the last
    /// attempt found. The container is to be stopped and started again.
    pub dead: Option<String>,
}

/// The probes of this node's containers and their verdicts.
#[derive(Debug, Default)]
pub struct Prober {
    verdicts: Mutex<HashMap<String, watch::Receiver<Verdict>>>,
}

impl Prober {
    /// Begin the probes of the just-started container `id` afresh, forgetting earlier verdicts;
    /// returns the task that runs them, or `None` when it has none. `netns` is the network
    /// namespace it joined; without one it has its own, found through its init process.
    pub fn start(
        &self,
        runtime: Runtime,
        id: &str,
        probes: &Probes,
        netns: Option<PathBuf>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        if probes.is_empty() {
            self.forget(id);
            return None;
        }
        let ready = match probes.readiness {
            Some(_) => Err("the readiness probe has not passed yet".to_owned()),
            None => Ok(()),
        };
        let (tx, rx) = watch::channel(Verdict { ready, dead: None });
        self.verdicts.lock().expect("lock").insert(id.to_owned(), rx);
        let target = Target::new(runtime, id, netns);
        let (readiness, liveness) = (probes.readiness.clone(), probes.liveness.clone());
        Some(async move {
            let (target, tx) = (&target, &tx);
            let ready = async move {
                if let Some(p) = readiness {
                    watch_readiness(&p, || target.attempt(&p), |r| set_ready(tx, r)).await;
                }
            };
            let live = async move {
                if let Some(p) = liveness {
                    let dead = watch_liveness(&p, || target.attempt(&p)).await;
                    tx.send_modify(|v| v.dead = Some(dead));
                }
            };
            tokio::join!(ready, live);
        })
    }

    /// What the probes of container `id` found last, if it has probes.
    pub fn verdict(&self, id: &str) -> Option<Verdict> {
        self.verdicts.lock().expect("lock").get(id).map(|rx| rx.borrow().clone())
    }

    /// Drop what is known of container `id`'s probes (it is removed, or starts again).
    pub fn forget(&self, id: &str) {
        self.verdicts.lock().expect("lock").remove(id);
    }
}

fn set_ready(tx: &watch::Sender<Verdict>, ready: Result<(), String>) {
    tx.send_if_modified(|v| {
        let changed = v.ready != ready;
        v.ready = ready;
        changed
    });
}

/// One probe's verdict from its attempts, as Kubernetes decides it: it turns to failing after
/// `failure_threshold` failed attempts in a row, and back to passing after `success_threshold`
/// successful ones in a row.
#[derive(Debug, Clone)]
pub struct Threshold {
    failures: u32,
    successes: u32,
    /// The last attempt's result and how many in a row had it.
    last: Option<(bool, u32)>,
    passing: bool,
}

impl Threshold {
    /// The verdict of `probe` before any attempt: `passing` (a liveness probe) or not (readiness).
    pub fn new(probe: &Probe, passing: bool) -> Self {
        Self { failures: probe.failure_threshold, successes: probe.success_threshold, last: None, passing }
    }

    /// Take an attempt's result; returns the verdict after it.
    pub fn observe(&mut self, ok: bool) -> bool {
        let run = match self.last {
            Some((was, run)) if was == ok => run.saturating_add(1),
            _ => 1,
        };
        self.last = Some((ok, run));
        if ok && run >= self.successes {
            self.passing = true;
        } else if !ok && run >= self.failures {
            self.passing = false;
        }
        self.passing
    }

    /// Successful attempts in a row so far.
    fn successes_in_a_row(&self) -> u32 {
        match self.last {
            Some((true, run)) => run,
            _ => 0,
        }
    }
}

/// Attempt times: after the initial delay, then once a period (later when an attempt overran).
fn schedule(probe: &Probe) -> tokio::time::Interval {
    let first = tokio::time::Instant::now() + Duration::from_secs(probe.initial_delay_seconds.into());
    let mut ticks = tokio::time::interval_at(first, Duration::from_secs(probe.period_seconds.max(1).into()));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Run readiness probe `probe` with `attempt` forever, handing each new verdict to `report`.
async fn watch_readiness<F: Future<Output = Result<(), String>>>(
    probe: &Probe,
    mut attempt: impl FnMut() -> F,
    mut report: impl FnMut(Result<(), String>),
) {
    let (mut threshold, mut ticks) = (Threshold::new(probe, false), schedule(probe));
    loop {
        ticks.tick().await;
        let found = attempt().await;
        let passing = threshold.observe(found.is_ok());
        report(match found {
            _ if passing => Ok(()),
            Err(why) => Err(format!("readiness probe failed: {why}")),
            Ok(()) => Err(format!(
                "the readiness probe passed {} of the {} times in a row it needs",
                threshold.successes_in_a_row(),
                probe.success_threshold
            )),
        });
    }
}

/// Run liveness probe `probe` with `attempt` until it fails; returns what the last attempt found.
async fn watch_liveness<F: Future<Output = Result<(), String>>>(
    probe: &Probe,
    mut attempt: impl FnMut() -> F,
) -> String {
    let (mut threshold, mut ticks) = (Threshold::new(probe, true), schedule(probe));
    loop {
        ticks.tick().await;
        let found = attempt().await;
        if !threshold.observe(found.is_ok())
            && let Err(why) = found
        {
            return match probe.failure_threshold {
                1 => why,
                n => format!("{why} ({n} times in a row)"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;
    use zgrid_types::workload::ProbeAction;

    fn probe(delay: u32, period: u32, failures: u32, successes: u32) -> Probe {
        Probe {
            initial_delay_seconds: delay,
            period_seconds: period,
            failure_threshold: failures,
            success_threshold: successes,
            ..Probe::new(ProbeAction::TcpSocket { port: 80 })
        }
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        // Readiness: not passing until 2 successes in a row; failing again after 3 failures.
        let mut t = Threshold::new(&probe(0, 1, 3, 2), false);
        let verdicts: Vec<bool> =
            [true, false, true, true, false, false, true, false, false, false, true].map(|ok| t.observe(ok)).into();
        assert_eq!(verdicts, [false, false, false, true, true, true, true, true, true, false, false]);
        // Liveness: passing until 3 failures in a row; a success in between starts the count again.
        let mut t = Threshold::new(&probe(0, 1, 3, 1), true);
        let verdicts: Vec<bool> = [false, false, true, false, false, false].map(|ok| t.observe(ok)).into();
        assert_eq!(verdicts, [true, true, true, true, true, false]);
        let mut once = Threshold::new(&probe(0, 1, 1, 1), true);
        assert!(!once.observe(false));
        assert!(once.observe(true));
    }

    /// The seconds after the start at which each attempt ran.
    type Times = std::sync::Arc<Mutex<Vec<u64>>>;

    /// An attempt function giving the results of `script` in turn (then failures), and the
    /// times of its attempts.
    fn scripted(script: &[Result<(), &str>]) -> (impl FnMut() -> std::future::Ready<Result<(), String>>, Times) {
        let start = Instant::now();
        let times = Times::default();
        let mut results = script.iter().map(|r| r.map_err(str::to_owned)).collect::<Vec<_>>().into_iter();
        let seen = times.clone();
        let attempt = move || {
            seen.lock().unwrap().push(start.elapsed().as_secs());
            std::future::ready(results.next().unwrap_or_else(|| Err("off script".into())))
        };
        (attempt, times)
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_turns_after_its_thresholds_at_its_period() {
        let (attempt, times) = scripted(&[Err("refused"), Ok(()), Ok(()), Ok(()), Err("refused"), Err("refused")]);
        let mut reports = Vec::new();
        let p = probe(5, 2, 2, 2);
        let watch = watch_readiness(&p, attempt, |r| reports.push(r));
        assert!(tokio::time::timeout(Duration::from_secs(16), watch).await.is_err());
        assert_eq!(*times.lock().unwrap(), [5, 7, 9, 11, 13, 15], "an initial delay of 5 s, then every 2 s");
        assert_eq!(
            reports,
            [
                Err("readiness probe failed: refused".to_owned()),
                Err("the readiness probe passed 1 of the 2 times in a row it needs".to_owned()),
                Ok(()),
                Ok(()),
                Ok(()),
                Err("readiness probe failed: refused".to_owned()),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_after_its_failure_threshold_in_a_row() {
        let script = [Err("refused"), Err("refused"), Ok(()), Err("a"), Err("b"), Err("exit status 1")];
        let (attempt, times) = scripted(&script);
        let dead = watch_liveness(&probe(0, 1, 3, 1), attempt).await;
        assert_eq!(dead, "exit status 1 (3 times in a row)");
        assert_eq!(*times.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
        let (attempt, _) = scripted(&[Err("refused")]);
        assert_eq!(watch_liveness(&probe(0, 10, 1, 1), attempt).await, "refused");
    }
}
