//! Containers: a signed container workload becomes a runc container through [`Runtime`], with
//! its image, limits, environment, entrypoint, volumes and network; its health is its
//! process's state and what its probes found ([`super::probes`]).

use zgrid_types::workload::{Container, FlistSource, LogEndpoint, StatsEndpoint, VolumeMount};
use zgrid_types::{WorkloadId, WorkloadSpec};

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Workloads, logs, redis, stats};
use crate::flist::ImageProblem;
use crate::network::Reach;
use crate::provision::{Exit, Health, Progress, ProvisionError};
use crate::runtime::{Bind, ContainerConfig, ContainerState, HOST_INIT, RuntimeError};

/// Most processes (and threads) one container may run.
const PIDS_LIMIT: i64 = 4096;

/// Most lines of a stopped container's output its results carry.
const OUTPUT_LINES: usize = 10;

/// Most characters of each of those lines.
const OUTPUT_LINE_CHARS: usize = 200;

/// The last [`OUTPUT_LINES`] non-empty lines of `log`, each cut to [`OUTPUT_LINE_CHARS`].
fn last_lines(log: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let from = lines.len().saturating_sub(OUTPUT_LINES);
    lines[from..].iter().map(|l| l.chars().take(OUTPUT_LINE_CHARS).collect()).collect()
}

/// The causes an [`ImageProblem::Damaged`] message lists.
fn causes(damaged: &str) -> &str {
    damaged.strip_prefix(crate::flist::DAMAGED).and_then(|c| c.strip_prefix(": ")).unwrap_or(damaged)
}

/// A running container's counters as last reported.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    /// Processes the OOM killer killed.
    kills: u64,
    /// Processes or threads its pids limit refused.
    refused: u64,
}

impl Workloads {
    async fn config(&self, spec: &WorkloadSpec, c: &Container) -> Result<ContainerConfig, ProvisionError> {
        let id = &spec.id;
        for reach in outside_reaches(c) {
            self.networks.outside_or_why(reach)?;
        }
        if c.interactive && c.network_connection.is_empty() {
            return Err(ProvisionError::Permanent(
                "an interactive container needs a private network: its console listens on the container's address there (deploy it with --network)".into(),
            ));
        }
        let (image, image_config) = self.image(spec, c).await?;
        let mut binds = Vec::with_capacity(c.volumes.len());
        for mount in &c.volumes {
            binds.push(Bind { source: self.volume_dir(mount)?, destination: mount.mountpoint.clone() });
        }
        let netns = match c.network_connection.first() {
            Some(n) => {
                let userns = self.runtime.user_namespace(id.as_str()).await.map_err(|e| {
                    tracing::warn!(workload = %id, error = %e, "no user namespace for the container");
                    ProvisionError::Transient(e.for_owner(self.runtime.root()))
                })?;
                let netns =
                    self.networks.attach(id, userns.as_deref(), &spec.owner_key, &n.network_id, n.ipaddress).await?;
                for reach in outside_reaches(c) {
                    self.networks.attach_outside(id, reach, &c.open_ports).await?;
                }
                Some(netns)
            }
            None => None,
        };
        let env = self.environment(spec, &c.environment, &c.secret_environment)?;
        // An interactive container runs no entrypoint: a pause init from the host keeps it up
        // for the console to start processes in.
        let (args, host_init) = if c.interactive {
            let init = crate::runtime::command::find_program("catatonit", "catatonit")
                .map_err(|e| ProvisionError::Permanent(format!("interactive containers: {e}")))?;
            (vec![HOST_INIT.to_owned(), "-P".to_owned()], Some(init))
        } else {
            let args = c.entrypoint_args().map_err(|e| ProvisionError::Permanent(e.to_string()))?;
            (args, None)
        };
        Ok(ContainerConfig {
            id: id.to_string(),
            image,
            image_config,
            env,
            args,
            hostname: id.to_string(),
            cpu: c.capacity.cpu,
            memory_mib: c.capacity.memory,
            disk_mib: c.capacity.disk_size,
            pids_limit: PIDS_LIMIT,
            netns,
            binds,
            host_init,
        })
    }

    /// Where the volume `mount` names is mounted on this node.
    pub(super) fn volume_dir(&self, mount: &VolumeMount) -> Result<PathBuf, ProvisionError> {
        let volume =
            self.runtime.volume(mount.volume_id.as_str()).map_err(|e| ProvisionError::Transient(e.to_string()))?;
        volume.ok_or_else(|| {
            ProvisionError::Transient(format!("volume {} is not mounted on this node yet", mount.volume_id))
        })
    }

    /// The environment `plain` with the variables sealed to this node in `sealed` opened;
    /// errors name the variable, never its value.
    pub(super) fn environment(
        &self,
        spec: &WorkloadSpec,
        plain: &BTreeMap<String, String>,
        sealed: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, ProvisionError> {
        let mut env: Vec<(String, String)> = plain.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (name, sealed) in sealed {
            let value = self.key.unseal_secret(sealed).map_err(|e| {
                ProvisionError::Permanent(format!(
                    "secret_environment.{name}: {e}; seal it to this node ({})",
                    spec.node_id
                ))
            })?;
            env.push((name.clone(), value));
        }
        Ok(env)
    }

    /// The container's root filesystem and, for flists, its image config file.
    async fn image(&self, spec: &WorkloadSpec, c: &Container) -> Result<(PathBuf, Option<PathBuf>), ProvisionError> {
        let source = c.flist_source().map_err(|e| ProvisionError::Permanent(e.to_string()))?;
        self.image_from(spec, source, &c.hub_url, &c.flist_hash).await
    }

    /// The root filesystem of image `source` (a container's or a VM's) and, for flists, its
    /// image config file: an flist mounted from `hub_url` (the URL's own hub when empty),
    /// pinned to `flist_hash` when set, or a directory or archive on this node.
    pub(super) async fn image_from(
        &self,
        spec: &WorkloadSpec,
        source: FlistSource<'_>,
        hub_url: &str,
        flist_hash: &str,
    ) -> Result<(PathBuf, Option<PathBuf>), ProvisionError> {
        let path = match source {
            FlistSource::Hub(url) => {
                let flists = self.flists.as_ref().ok_or_else(|| {
                    ProvisionError::Permanent(
                        "this node cannot mount flists from hubs (no mount service configured)".into(),
                    )
                })?;
                let image = flists.mount(spec.id.as_str(), url, hub_url, flist_hash).await?;
                return Ok((image.root, Some(image.config)));
            }
            FlistSource::Local(path) => PathBuf::from(path),
        };
        // Unpacking may block (a slow disk, a FIFO): keep it off the async workers so the step
        // time limit can abandon it.
        let images = self.images.clone();
        let image = tokio::task::spawn_blocking(move || crate::source::resolve(&path, &images))
            .await
            .map_err(|e| ProvisionError::Transient(format!("image preparation stopped: {e}")))??;
        Ok((image, None))
    }

    /// The Redis channels of the container's stdout and of its stderr; a sealed channel replaces
    /// the plain one and is opened with the node's key (errors name the field, never the value).
    fn log_channels(&self, c: &Container) -> Result<[Vec<redis::Channel>; 2], ProvisionError> {
        let mut channels = [Vec::new(), Vec::new()];
        for (i, LogEndpoint::Redis(r)) in c.logs.iter().enumerate() {
            for (stream, plain, sealed, field) in
                [(0, &r.stdout, &r.secret_stdout, "stdout"), (1, &r.stderr, &r.secret_stderr, "stderr")]
            {
                let bad = |e: String| ProvisionError::Permanent(format!("logs[{i}].{field}: {e}"));
                let url = if sealed.is_empty() {
                    plain.clone()
                } else {
                    self.key.unseal_secret(sealed).map_err(|e| bad(format!("(sealed) {e}")))?
                };
                if !url.is_empty() {
                    channels[stream].push(redis::Channel::parse(&url).map_err(bad)?);
                }
            }
        }
        Ok(channels)
    }

    /// Start the container (or leave it running).
    pub(super) async fn provision_container(
        &self,
        spec: &WorkloadSpec,
        c: &Container,
        progress: Progress<'_>,
    ) -> Result<serde_json::Value, ProvisionError> {
        let id = &spec.id;
        // Checked before any side effect.
        let stats_channels = c
            .stats
            .iter()
            .enumerate()
            .map(|(i, StatsEndpoint::Redis(r))| {
                redis::Channel::parse(&r.endpoint).map_err(|e| ProvisionError::Permanent(format!("stats[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let log_channels = self.log_channels(c)?;
        let config = self.config(spec, c).await?;
        progress(zgrid_types::result::IMAGE_READY);
        // Its agent-side tasks start afresh after the start (after an agent restart, none are
        // left); none reads the pipes meanwhile, so what runc says when it fails is quoted.
        self.tasks.stop(id.as_str());
        self.prober.forget(id.as_str());
        // A running container is left alone; a stopped one starts again on its writable layer.
        let started = std::time::Instant::now();
        if let Err(e) = self.runtime.start(&config).await {
            return Err(self.start_failed(id, e).await);
        }
        if !stats_channels.is_empty() {
            let task = stats::publish(self.runtime.clone(), id.to_string(), stats_channels, self.problems.clone());
            self.tasks.start(id.as_str(), task);
        }
        if let (true, Some(netns), Some(n)) = (c.interactive, &config.netns, c.network_connection.first()) {
            let assets = self.console_assets.clone();
            let task = crate::console::serve(self.runtime.clone(), id.to_string(), netns.clone(), n.ipaddress, assets);
            self.tasks.start(id.as_str(), task);
        }
        let task = logs::forward(self.runtime.clone(), id.to_string(), log_channels, self.problems.clone());
        self.tasks.start(id.as_str(), task);
        if let Some(task) = self.prober.start(self.runtime.clone(), id.as_str(), &c.probes, config.netns.clone()) {
            self.tasks.start(id.as_str(), task);
        }
        let start_ms = started.elapsed().as_secs_f64() * 1000.0;
        let ipv4 = c.network_connection.first().map(|n| n.ipaddress.to_string());
        // Ready once its readiness probe passes, stable once it has run for the engine's settle
        // window; the engine reports the changes.
        let ready = c.probes.readiness.is_none();
        let start_ms = (start_ms * 10.0).round() / 10.0;
        let mut data =
            serde_json::json!({ "id": id, "ipv4": ipv4, "start_ms": start_ms, "ready": ready, "stable": false });
        for reach in outside_reaches(c) {
            if let Some(outside) = self.networks.outside(reach) {
                let key = match reach {
                    Reach::PublicIpv6 => "public_ipv6",
                    Reach::Yggdrasil => "yggdrasil_ip",
                };
                data[key] = outside.address(id).to_string().into();
            }
        }
        Ok(data)
    }

    /// What the owner hears of a failed start: the cause, without the node's paths or command
    /// lines (logged here with them). A program missing from the image or a damaged image is
    /// permanent: trying again cannot help.
    async fn start_failed(&self, id: &WorkloadId, e: RuntimeError) -> ProvisionError {
        tracing::warn!(workload = %id, error = %e, "the container did not start");
        if matches!(e, RuntimeError::EntrypointMissing { .. } | RuntimeError::InvalidConfig { .. }) {
            return ProvisionError::Permanent(e.for_owner(self.runtime.root()));
        }
        let problem = match &self.flists {
            Some(flists) => flists.problem(id.as_str()).await,
            None => None,
        };
        match problem {
            // A chunk whose bytes do not match its id is corrupt where the hub keeps it: every
            // attempt would read the same bytes.
            Some(ImageProblem::Damaged(why)) if why.contains("corrupt") => {
                ProvisionError::Permanent(format!("the image is corrupt: {}", causes(&why)))
            }
            Some(problem) => ProvisionError::Transient(problem.to_string()),
            None => ProvisionError::Transient(e.for_owner(self.runtime.root())),
        }
    }

    /// The container's process state; new OOM kills, processes refused by its pids limit and
    /// Redis outages of its publishers are reported once each (a container started by an
    /// older agent also has its log trimmed).
    pub(super) async fn container_health(&self, id: &WorkloadId) -> Health {
        match self.runtime.state(id.as_str()).await {
            Ok(ContainerState::Running { .. }) => {
                if let Some(problem) = self.image_problem(id, || self.runtime.stop_for_new_image(id.as_str())).await {
                    return problem;
                }
                let verdict = self.prober.verdict(id.as_str());
                if let Some(dead) = verdict.as_ref().and_then(|v| v.dead.as_ref()) {
                    // Stopped here, it is started again like a container that exited.
                    if let Err(e) = self.runtime.stop(id.as_str()).await {
                        tracing::warn!(workload = %id, error = %e, "cannot stop a container that failed its liveness probe");
                    }
                    return Health::Stopped(format!("liveness probe failed: {dead}"));
                }
                if let Err(e) = self.runtime.trim_logs(id.as_str()) {
                    tracing::warn!(workload = %id, error = %e, "cannot trim the container's log");
                }
                let kills = self.runtime.oom_kills(id.as_str()).unwrap_or(0);
                let refused = self.runtime.pids_limit_hits(id.as_str()).unwrap_or(0);
                let mut seen = self.seen.lock().expect("lock");
                let before = seen.insert(id.to_string(), Seen { kills, refused }).unwrap_or_default();
                if kills > before.kills {
                    Health::Degraded(format!(
                        "out of memory: the kernel killed a process in the container ({kills} so far)"
                    ))
                } else if refused > before.refused {
                    Health::Degraded(format!(
                        "process limit reached: the container has {PIDS_LIMIT} processes and threads at most, \
                         and {refused} new ones were refused so far"
                    ))
                } else if let Some(problem) = self.problems.take_new(id.as_str()) {
                    Health::Degraded(problem)
                } else if let Some(Err(why)) = verdict.map(|v| v.ready) {
                    Health::NotReady(why)
                } else {
                    Health::Running
                }
            }
            Ok(ContainerState::Stopped { oom_killed }) => Health::Exited(self.exit_of(id, oom_killed).await),
            Ok(ContainerState::Missing) => Health::Missing,
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "cannot read container state");
                Health::Running
            }
        }
    }

    /// How a stopped container ended: its exit code or signal (when this agent started it),
    /// the OOM killer, image trouble, and its last lines of output.
    async fn exit_of(&self, id: &WorkloadId, oom_killed: bool) -> Exit {
        let exit = self.runtime.exit(id.as_str()).unwrap_or_else(|e| {
            tracing::warn!(workload = %id, error = %e, "cannot read how the container ended");
            None
        });
        let mut how = ended(exit, oom_killed);
        let mut permanent = false;
        if let (false, Some(flists)) = (oom_killed, &self.flists)
            && let Some(problem) = flists.problem(id.as_str()).await
        {
            how = match problem {
                // As when it fails to start: every start would read the same bytes.
                ImageProblem::Damaged(why) if why.contains("corrupt") => {
                    permanent = true;
                    format!("the image is corrupt: {}; {how}", causes(&why))
                }
                problem => format!("{how}; {problem}"),
            };
        }
        let mut facts = serde_json::Map::new();
        if let Some(code) = exit.and_then(|e| e.code) {
            facts.insert("exit_code".into(), code.into());
        }
        if let Some(signal) = exit.and_then(|e| e.signal) {
            facts.insert("signal".into(), signal.into());
        }
        facts.insert("oom_killed".into(), oom_killed.into());
        let output = self.runtime.logs(id.as_str()).map(|log| last_lines(&log)).unwrap_or_default();
        facts.insert("output".into(), output.into());
        Exit { how, facts, permanent }
    }

    /// A running container's or VM's image trouble: a dead mount stops it (with `stop`) so
    /// that it starts again over a fresh mount; chunks that could not be read are reported.
    pub(super) async fn image_problem<F>(&self, id: &WorkloadId, stop: impl FnOnce() -> F) -> Option<Health>
    where
        F: std::future::Future<Output = Result<(), crate::runtime::RuntimeError>>,
    {
        match self.flists.as_ref()?.problem(id.as_str()).await? {
            ImageProblem::Gone(problem) => {
                if let Err(e) = stop().await {
                    tracing::warn!(workload = %id, error = %e, "cannot stop a workload whose image is gone");
                }
                Some(Health::Stopped(problem))
            }
            ImageProblem::Damaged(problem) => Some(Health::Degraded(problem)),
        }
    }
}

/// How a container ended, cause first; one that finished on its own is told what to do.
fn ended(exit: Option<crate::runtime::Exit>, oom_killed: bool) -> String {
    match exit {
        _ if oom_killed => "killed by the kernel: out of memory".to_owned(),
        Some(exit) if exit.code == Some(0) && exit.signal.is_none() => format!(
            "the container {}: its entrypoint finished, and a container must keep running; give it \
             an entrypoint that does not end (zgrid deploy container --entrypoint)",
            exit.describe()
        ),
        Some(exit) => format!("the container {}", exit.describe()),
        None => "the container exited".to_owned(),
    }
}

/// The outside networks container `c` asks for addresses on.
fn outside_reaches(c: &Container) -> impl Iterator<Item = Reach> + '_ {
    let connections = c.network_connection.iter();
    let public = connections.clone().any(|n| n.public_ipv6).then_some(Reach::PublicIpv6);
    let yggdrasil = connections.clone().any(|n| n.yggdrasil_ip).then_some(Reach::Yggdrasil);
    public.into_iter().chain(yggdrasil)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_that_finished_is_told_to_keep_running() {
        use crate::runtime::Exit;
        let finished = ended(Some(Exit { code: Some(0), signal: None }), false);
        assert!(finished.starts_with("the container exited with code 0: "), "{finished}");
        assert!(finished.contains("--entrypoint"), "{finished}");
        assert_eq!(ended(Some(Exit { code: Some(1), signal: None }), false), "the container exited with code 1");
        assert_eq!(ended(Some(Exit { code: Some(0), signal: None }), true), "killed by the kernel: out of memory");
    }

    #[test]
    fn the_last_lines_of_output_are_kept_short() {
        let log = format!("first\n\n{}\n{}boom\r\n", "x\n".repeat(20), "y".repeat(500));
        let lines = last_lines(log.as_bytes());
        assert_eq!(lines.len(), OUTPUT_LINES);
        assert_eq!(lines.last().unwrap().chars().count(), OUTPUT_LINE_CHARS);
        assert!(lines[..OUTPUT_LINES - 1].iter().all(|l| l == "x"));
        assert_eq!(last_lines(b"boom\n"), ["boom"]);
        assert!(last_lines(b"").is_empty());
    }
}
