//! The container's processes as its own pid namespace sees them, read from the host's `/proc`
//! (the last pid of `NSpid:` in `/proc/PID/status` is the one inside the container), and how
//! the console ends one: SIGTERM, then SIGKILL when it has not ended after [`GRACE`].

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How long a process has to end after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// How long a process may take to vanish after SIGKILL.
const KILLED_WITHIN: Duration = Duration::from_secs(2);

/// A process of the container.
#[derive(Debug, Clone)]
pub struct ContainerProcess {
    /// Its pid on the host.
    pub host_pid: u32,
    /// Its pid inside the container (1 is the container's init).
    pub pid: u32,
    /// Its command line.
    pub cmdline: Vec<String>,
    /// Its state, as `ps` shows it: `R`, `S`, `D`, `T`….
    pub state: String,
}

/// What `/proc` says of host pid `host_pid`; `None` once it is gone or a zombie.
pub fn read(host_pid: u32) -> Option<ContainerProcess> {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let state = field("State:")?.split_whitespace().next()?.to_owned();
    if state == "Z" || state == "X" {
        return None;
    }
    let pid = field("NSpid:")?.split_whitespace().next_back()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{host_pid}/cmdline")).unwrap_or_default();
    let mut cmdline: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if cmdline.is_empty() {
        // A kernel thread or a process that cleared its arguments: its name, as ps shows it.
        cmdline.push(format!("[{}]", field("Name:").unwrap_or_default()));
    }
    Some(ContainerProcess { host_pid, pid, cmdline, state })
}

/// The processes of the host pids `host_pids` (a container's), without its init, by pid.
pub fn list(host_pids: &[u32]) -> Vec<ContainerProcess> {
    let mut listed: Vec<ContainerProcess> = host_pids.iter().filter_map(|&p| read(p)).filter(|p| p.pid != 1).collect();
    listed.sort_by_key(|p| p.pid);
    listed
}

/// End host process `host_pid`: SIGTERM, SIGKILL after [`GRACE`]; returns once it is gone.
/// `Err` says why it could not be ended.
pub async fn terminate(host_pid: u32) -> Result<(), String> {
    let pid = Pid::from_raw(i32::try_from(host_pid).map_err(|_| format!("pid {host_pid} is out of range"))?);
    for (signal, within) in [(Signal::SIGTERM, GRACE), (Signal::SIGKILL, KILLED_WITHIN)] {
        match nix::sys::signal::kill(pid, signal) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => return Ok(()),
            Err(e) => return Err(format!("cannot send {signal} to it: {e}")),
        }
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if read(host_pid).is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Err(format!("it did not end within {:?} of SIGKILL (waiting on a device?)", KILLED_WITHIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_with_its_own_pid_and_command_line() {
        let me = read(std::process::id()).expect("this process");
        // Tests do not run in a pid namespace of their own: the pid inside is the host's.
        assert_eq!(me.pid, std::process::id());
        assert!(me.cmdline[0].contains("zgrid_node"), "{:?}", me.cmdline);
        // Its main thread, waiting for this test's thread, or running.
        assert!(me.state == "S" || me.state == "R", "{}", me.state);
    }

    #[tokio::test]
    async fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
        let mut child = std::process::Command::new("sh").args(["-c", "trap '' TERM; exec sleep 60"]).spawn().unwrap();
        let host_pid = child.id();
        // Reap it as soon as it dies, as the container's init would.
        let reaper = std::thread::spawn(move || child.wait());
        std::thread::sleep(Duration::from_millis(200));
        let started = std::time::Instant::now();
        terminate(host_pid).await.unwrap();
        assert!(started.elapsed() >= GRACE, "ended before the grace: {:?}", started.elapsed());
        assert!(read(host_pid).is_none());
        reaper.join().unwrap().unwrap();
    }
}
