//! Run `zgrid explorer` and `zgrid hub serve` as child processes on loopback, and the CLI
//! against them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const ZGRID: &str = env!("CARGO_BIN_EXE_zgrid");

/// A `zgrid explorer` process, killed when dropped.
pub struct ExplorerProcess {
    pub child: Child,
    pub url: String,
}

impl ExplorerProcess {
    /// Start an explorer on `db` and wait until it listens.
    pub fn start(db: &str) -> Self {
        let (child, url) = spawn_server(&["explorer", "--listen", "127.0.0.1:0", "--db", db]);
        Self { url, child }
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ExplorerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `zgrid hub serve` process, killed when dropped.
pub struct HubProcess {
    pub child: Child,
    pub url: String,
}

impl HubProcess {
    /// Start a hub on the data directory `data` with `args` and wait until it listens.
    pub fn start(data: &Path, args: &[&str]) -> Self {
        let mut all = vec!["hub", "serve", "--listen", "127.0.0.1:0", "--data", data.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        let (child, url) = spawn_server(&all);
        Self { url, child }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `zgrid <args>`, a server, and wait until it prints `<args[0]> listening on <url>`.
fn spawn_server(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(ZGRID)
        .args(args)
        .env("ZGRID_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn zgrid {args:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read ready line");
    let banner = format!("{} listening on ", args[0]);
    let url = line.trim().strip_prefix(&banner).unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, url.to_string())
}

/// Run the CLI with `home` as its home directory and `explorer` as its explorer.
pub fn zgrid(home: &Path, explorer: &str, args: &[&str]) -> Output {
    zgrid_devnet::cli(Path::new(ZGRID), home, explorer).args(args).output().expect("run zgrid")
}

/// Run the CLI with `--json` and parse its output; panics with stderr on failure.
pub fn zgrid_json(home: &Path, explorer: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = zgrid(home, explorer, &all);
    assert!(out.status.success(), "zgrid {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("zgrid {args:?} printed non-JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}
