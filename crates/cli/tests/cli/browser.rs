//! Debian's headless Chromium, on the host or inside a network namespace, driven over the
//! DevTools protocol: open a page, run script in it, type, and take screenshots. In a namespace,
//! the protocol's socket is opened from a thread that joins it (Chromium listens on its
//! loopback), then used from here.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// How long one protocol call may take.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// A headless Chromium with one page open.
pub(crate) struct Browser {
    chromium: Child,
    socket: WebSocket<TcpStream>,
    /// The page's session on the browser's socket.
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start Chromium in `netns` (the host's network without) with a blank page.
    pub(crate) fn open(netns: Option<&zgrid_devnet::Netns>) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut chromium = netns
            .map_or_else(|| std::process::Command::new("chromium"), |n| n.command("chromium"))
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .args(["--remote-debugging-port=0", "--window-size=1280,860", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium (apt-get install chromium)");
        let mut lines = BufReader::new(chromium.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = chromium.kill();
                panic!("chromium did not open its DevTools port:\n{}", said.join("\n"));
            };
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                break url.trim().to_owned();
            }
            said.push(line);
        };
        // Keep reading, or Chromium blocks once the pipe is full.
        std::thread::spawn(move || lines.for_each(drop));
        let port: u16 = url.trim_start_matches("ws://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
        let stream = match netns {
            Some(netns) => connect_in(&netns.path(), port),
            None => TcpStream::connect(("127.0.0.1", port)).unwrap(),
        };
        stream.set_read_timeout(Some(CALL_LIMIT)).unwrap();
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("the DevTools WebSocket");
        let mut browser = Self { chromium, socket, session: String::new(), next_id: 0, _profile: profile };
        let target = browser.call_on(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached =
            browser.call_on(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }));
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser
    }

    /// Call `method` on the page; its result.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call_on(Some(&session), method, params)
    }

    /// Call `method` on the browser (`session` `None`) or a page; events meanwhile are skipped.
    fn call_on(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket.send(Message::Text(message.to_string().into())).unwrap();
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < CALL_LIMIT, "{method} got no answer within {CALL_LIMIT:?}");
            let Message::Text(text) = self.socket.read().unwrap_or_else(|e| panic!("{method}: {e}")) else { continue };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method} failed: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Load `url` and wait until it has loaded.
    pub(crate) fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{url} did not load"));
    }

    /// The value of script `expression` in the page (promises awaited).
    pub(crate) fn eval(&mut self, expression: &str) -> Value {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let result = self.call("Runtime.evaluate", params);
        assert!(result["exceptionDetails"].is_null(), "{expression} threw: {}", result["exceptionDetails"]);
        result["result"]["value"].clone()
    }

    /// The value of `expression` once it is truthy, within `limit`.
    pub(crate) fn wait_for(&mut self, expression: &str, limit: Duration) -> Option<Value> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let value = self.eval(expression);
            if !(value.is_null() || value == json!(false) || value == json!("") || value == json!(0)) {
                return Some(value);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Type `text` where the focus is, then press Enter.
    pub(crate) fn type_line(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
        self.press("Enter", "Enter", 13, "\r");
    }

    /// Press and release key `key` (DOM `code` `code`, key code `key_code`), which types `text`.
    pub(crate) fn press(&mut self, key: &str, code: &str, key_code: u32, text: &str) {
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code });
            if kind == "keyDown" {
                event["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", event);
        }
    }

    /// Save a PNG of the page as `name` in [`artefacts`]; its path.
    pub(crate) fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        let path = artefacts().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.send(Message::Text(json!({ "id": 0, "method": "Browser.close" }).to_string().into()));
        let closed = Instant::now();
        while closed.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.chromium.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.chromium.kill();
        let _ = self.chromium.wait();
    }
}

/// The directory of test artefacts (`target/test-artefacts`, which CI keeps).
pub(crate) fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// A TCP connection to `127.0.0.1:port` in the network namespace at `netns`.
fn connect_in(netns: &Path, port: u16) -> TcpStream {
    let netns = std::fs::File::open(netns).unwrap();
    std::thread::spawn(move || {
        // This thread alone joins the namespace; the socket stays in it wherever it is used.
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpStream::connect(("127.0.0.1", port)).unwrap()
    })
    .join()
    .unwrap()
}
