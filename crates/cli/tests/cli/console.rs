//! An interactive container's console end to end, from a "laptop" namespace joined to the
//! container's private network: `zgrid deploy --interactive` says where it is, `zgrid console`
//! lists, sends (as plain text) and attaches a terminal (driven under `script`'s
//! pseudo-terminal), and the web page, in Debian's headless Chromium driven over the DevTools
//! protocol, lists processes, starts one, attaches to it and kills it with xterm.js (served by
//! the node from `ZGRID_CONSOLE_ASSETS`, which scripts/test fills from npm). Screenshots of
//! the page are kept in `target/test-artefacts/`. Nothing answers outside the network.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::browser::{Browser, artefacts};
use crate::grid::{Grid, wait_until};
use crate::network::{Laptop, create, host, neighbour};

const LIMIT: Duration = Duration::from_secs(120);

/// `zgrid console ID` run under `script`'s pseudo-terminal in the laptop's namespace, typing
/// `input` (then end of input); what the terminal showed.
fn on_terminal(grid: &Grid, laptop: &Laptop, args: &str, input: &[u8]) -> Output {
    let command = format!("{} console {args}", crate::common::ZGRID);
    let mut script = laptop
        .netns
        .command("timeout")
        .args(["60", "script", "--quiet", "--return", "--command", &command, "/dev/null"])
        .env("ZGRID_HOME", grid.home.path())
        .env("ZGRID_EXPLORER", grid.devnet.explorer_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    script.stdin.take().unwrap().write_all(input).unwrap();
    script.wait_with_output().unwrap()
}

#[test]
fn an_interactive_container_has_a_console_reachable_only_on_its_private_network() {
    let grid = Grid::new();
    let node = grid.node(60);
    create(&grid, "desk", "10.97.0.0/16", &[&node]);
    let ip = host(&grid, "desk", &node, 9);
    let image = grid.image.to_str().unwrap();
    let mut deploy = vec!["deploy", "container", "--node", node.id(), "--flist", image];
    deploy.extend(["--entrypoint", "/bin/sh -c 'echo SHOULD NOT RUN'", "--memory", "32", "--disk", "64"]);
    deploy.extend(["--network", "desk", "--ip", &ip, "--interactive", "--wait"]);
    let deployed = grid.cli_raw(&deploy);
    let said = String::from_utf8_lossy(&deployed.stdout).into_owned();
    assert!(deployed.status.success(), "{said}\n{}", String::from_utf8_lossy(&deployed.stderr));
    let id = said
        .lines()
        .find_map(|l| l.strip_prefix("workload ").and_then(|l| l.strip_suffix(" is running")))
        .unwrap_or_else(|| panic!("no running workload in:\n{said}"))
        .to_owned();
    let url = format!("http://{ip}:7681/");
    assert!(said.contains(&format!("console: {url}")) && said.contains(&format!("zgrid console {id}")), "{said}");

    // From the deployer's machine joined to the network: without a terminal, the processes
    // (none but the init, which is not listed) and the URL.
    let (laptop, _) = Laptop::join(&grid, "desk", &node);
    let console = |args: &[&str]| {
        let mut command = laptop.netns.command(crate::common::ZGRID);
        command.env("ZGRID_HOME", grid.home.path()).env("ZGRID_EXPLORER", grid.devnet.explorer_url());
        command.arg("console").arg(&id).args(args).stdin(Stdio::null()).output().unwrap()
    };
    let listed = wait_until(LIMIT, || Some(console(&[])).filter(|o| o.status.success()));
    let listed =
        listed.unwrap_or_else(|| panic!("no console on {ip}:\n{}", String::from_utf8_lossy(&console(&[]).stderr)));
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(text.contains(&url) && !text.contains("/.zgrid/init"), "{text}");

    // A shell started through the API runs the command inside the container; what it shows
    // comes back as plain text.
    let out = console(&["--send", "echo $((6 * 7)) from $(hostname)"]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && shown.contains(&format!("42 from {id}")),
        "{shown}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!shown.contains('\x1b') && !shown.contains('\r'), "terminal codes in --send output: {shown:?}");
    assert!(
        !String::from_utf8_lossy(&grid.cli_raw(&["logs", &id]).stdout).contains("SHOULD NOT RUN"),
        "the entrypoint ran"
    );

    // On a terminal, `zgrid console ID` attaches it to a new shell: what is typed runs there,
    // and `exit` ends the session.
    let typed = on_terminal(&grid, &laptop, &id, b"echo $((6 * 7)) typed in $(hostname)\nexit\n");
    let shown = String::from_utf8_lossy(&typed.stdout).to_string();
    assert!(typed.status.success(), "{shown}\n{}", String::from_utf8_lossy(&typed.stderr));
    assert!(shown.contains(&format!("42 typed in {id}")), "the shell's output is not on the terminal:\n{shown}");
    // Ctrl-] detaches and leaves the shell running; `--attach N` takes it over again.
    let detached = on_terminal(&grid, &laptop, &id, b"\x1d");
    let shown = String::from_utf8_lossy(&detached.stdout).to_string();
    assert!(detached.status.success(), "{shown}\n{}", String::from_utf8_lossy(&detached.stderr));
    let process = shown
        .split("`zgrid console ")
        .nth(1)
        .and_then(|rest| rest.split("--attach ").nth(1))
        .and_then(|n| n.split('`').next())
        .unwrap_or_else(|| panic!("no --attach hint after Ctrl-]:\n{shown}"))
        .to_owned();
    let again = on_terminal(&grid, &laptop, &format!("{id} --attach {process}"), b"echo back in $((40 + 2))\nexit\n");
    let shown = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success() && shown.contains("back in 42"), "{shown}");
    // `--list` lists, also on a terminal.
    let listed = on_terminal(&grid, &laptop, &format!("{id} --list"), b"");
    let shown = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.status.success() && shown.contains(&url), "{shown}");

    // The web page: the process list (container pids, no init), start, attach, kill.
    let mut browser = Browser::open(Some(&laptop.netns));
    browser.goto(&url);
    assert_eq!(browser.eval("typeof Terminal"), "function", "no xterm.js on the page");
    assert_eq!(browser.eval("fetch('/assets/xterm.js').then((r) => r.status)"), 200);
    let rows = "[...document.querySelectorAll('#processes tbody tr[data-pid]')]";
    browser.wait_for(&format!("{rows}.length > 0 || document.querySelector('#processes .empty')"), LIMIT);
    let commands = browser.eval(&format!("{rows}.map((r) => r.querySelector('.cmd').textContent).join('\\n')"));
    assert!(!commands.as_str().unwrap().contains("/.zgrid/init"), "the init is listed: {commands}");
    browser.screenshot("console-1-processes.png");

    // From the keyboard: `/` goes to the program field, Enter starts it.
    browser.press("/", "Slash", 191, "/");
    assert_eq!(browser.eval("document.activeElement.id"), "program", "`/` does not go to the program field");
    browser.type_line("/bin/sh");
    let attached = browser.wait_for("document.querySelector('#processes tr.attached')?.dataset.pid", LIMIT);
    let pid: u32 = attached.expect("the started process is not listed as attached").as_str().unwrap().parse().unwrap();
    assert!(pid < 1000, "pid {pid} is not the container's own");
    let xterm_text = "document.querySelector('.xterm-rows')?.textContent.replace(/\\u00a0/g, ' ') ?? ''";
    browser.wait_for(&format!("({xterm_text}).includes('#')"), LIMIT).expect("no shell prompt in the terminal");
    browser.eval("document.querySelector('.xterm-helper-textarea').focus()");
    browser.type_line("echo $((6 * 7)) from the page of $(hostname)");
    let expected = format!("42 from the page of {id}");
    let seen = browser.wait_for(&format!("({xterm_text}).includes({expected:?})"), LIMIT);
    assert!(seen.is_some(), "no output in the xterm.js terminal:\n{}", browser.eval(xterm_text));

    // Any process of the container can be killed, also one the console did not start.
    browser.type_line("sleep 1234 &");
    let sleep = browser.wait_for(
        &format!("{rows}.find((r) => r.querySelector('.cmd').textContent === 'sleep 1234')?.dataset.pid"),
        LIMIT,
    );
    let sleep = sleep.expect("the shell's sleep is not listed");
    browser.screenshot("console-2-attached.png");
    let row = format!("document.querySelector('#processes tr[data-pid=\"{}\"]')", sleep.as_str().unwrap());
    assert_eq!(browser.eval(&format!("{row}.querySelector('button.attach') === null")), true, "attach offered");
    // Its kill button, reached from the keyboard.
    browser.eval(&format!("{row}.querySelector('button.kill').focus()"));
    browser.press("Enter", "Enter", 13, "\r");
    assert!(browser.wait_for(&format!("!{row}"), LIMIT).is_some(), "the sleep is still listed after kill");

    let kill = format!("document.querySelector('#processes tr[data-pid=\"{pid}\"] button.kill')");
    assert_eq!(browser.eval(&format!("{kill}.getAttribute('aria-label').startsWith('Kill pid {pid}')")), true);
    browser.eval(&format!("{kill}.click()"));
    let gone = browser.wait_for(&format!("!document.querySelector('#processes tr[data-pid=\"{pid}\"]')"), LIMIT);
    assert!(gone.is_some(), "pid {pid} is still listed after kill");
    let status = "document.getElementById('status').textContent";
    let ended = browser.wait_for(&format!("{status} === 'pid {pid} ended'"), LIMIT);
    assert!(ended.is_some(), "the page does not say the kill worked: {}", browser.eval(status));
    browser.screenshot("console-3-killed.png");
    drop(browser);
    eprintln!("the console's screenshots are in {}", artefacts().display());

    // The init is not the console's to kill.
    let init = format!("{url}api/pid/1/kill");
    let refused = laptop.netns.command("busybox").args(["wget", "-q", "-O", "-", "--post-data", "", &init]).output();
    assert!(!refused.unwrap().status.success(), "the console accepted to kill the init");
    assert!(console(&[]).status.success(), "the console is gone after a kill of the init was asked");

    // Another site's page in a browser on the network cannot use the console: not by a
    // cross-origin request, nor by a name of its own resolving to the address (DNS rebinding).
    let wget = |headers: &[&str], post: bool, path: &str| {
        let mut command = laptop.netns.command("busybox");
        command.args(["wget", "-q", "-O", "-"]);
        for header in headers {
            command.args(["--header", header]);
        }
        if post {
            command.args(["--post-data", ""]);
        }
        command.arg(format!("{url}{path}")).output().unwrap()
    };
    let start = "api/process/start?arg[]=/bin/sleep&arg[]=4321";
    let foreign = wget(&["Origin: http://evil.example"], true, start);
    assert!(!foreign.status.success(), "a start from another site's page was accepted");
    assert!(!wget(&["Host: evil.example:7681"], false, "api/processes").status.success(), "a rebound name answered");
    let listed = || String::from_utf8_lossy(&wget(&[], false, "api/processes").stdout).to_string();
    assert!(!listed().contains("4321"), "{}", listed());
    // The same request from the console's own page is served.
    let own = format!("Origin: {}", url.trim_end_matches('/'));
    assert!(wget(&[&own], true, start).status.success(), "a start from the console's own page was refused");
    assert!(listed().contains("4321"), "{}", listed());

    // Not from outside the network, even from a machine next to the node that routes the
    // network's addresses through it.
    let neighbour = neighbour(&grid, &node, &["10.97.0.0/16"]);
    let ping = neighbour.command("busybox").args(["ping", "-c", "1", "-W", "5", &node.address().to_string()]).output();
    assert!(ping.unwrap().status.success(), "the neighbour does not reach the node at all");
    let mut command = neighbour.command(crate::common::ZGRID);
    command.env("ZGRID_HOME", grid.home.path()).env("ZGRID_EXPLORER", grid.devnet.explorer_url());
    let outside = command.args(["console", &id]).output().unwrap();
    assert!(!outside.status.success(), "the console answered outside its network");
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("add-access"),
        "{}",
        String::from_utf8_lossy(&outside.stderr)
    );
}
