//! Run `zgrid explorer` (or `zgrid hub serve`) as a child process on loopback, and the CLI
//! against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const ZGRID: &str = env!("CARGO_BIN_EXE_zgrid");

/// A `zgrid explorer` or `zgrid hub serve` process, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Start an explorer on `db` and wait until it listens.
    pub fn start(db: &str) -> Self {
        Self::run(&["explorer", "--listen", "127.0.0.1:0", "--db", db])
    }

    /// Start a hub on the data directory `data` with `args` and wait until it listens.
    pub fn hub(data: &Path, args: &[&str]) -> Self {
        let mut all = vec!["hub", "serve", "--listen", "127.0.0.1:0", "--data", data.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        Self::run(&all)
    }

    /// Start `zgrid <args>` (a server: `explorer ...` or `hub serve ...`) and wait until it
    /// prints `<args[0]> listening on <url>`.
    pub fn run(args: &[&str]) -> Self {
        let mut child = Command::new(ZGRID)
            .args(args)
            .env("ZGRID_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn zgrid {args:?}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read ready line");
        let url = line
            .trim()
            .strip_prefix(&format!("{} listening on ", args[0]))
            .unwrap_or_else(|| panic!("unexpected first line {line:?} of zgrid {args:?}"));
        Self { url: url.to_string(), child }
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
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
