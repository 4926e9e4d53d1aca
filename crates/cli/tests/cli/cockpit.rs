//! The explorer's cockpit in a real browser (Debian's headless Chromium over the DevTools
//! protocol), on a devnet with two nodes in two countries, a private network and containers:
//! what a person picking nodes or looking for why a deployment failed sees.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use zgrid_devnet::NodeOptions;

use crate::browser::{Browser, artefacts};
use crate::grid::{Grid, id_of, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

/// The ids of the nodes the open page lists.
fn listed(browser: &mut Browser) -> BTreeSet<String> {
    let ids = browser.eval("[...document.querySelectorAll('tr[data-node]')].map(r => r.dataset.node)");
    ids.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// Type `text` into the node filter's field `name` (replacing what it held) and submit.
fn filter(browser: &mut Browser, name: &str, text: &str) {
    browser.eval(&format!(
        "(() => {{ const i = document.querySelector('form.filters [name={name}]'); i.value = ''; i.focus(); }})()"
    ));
    let before = browser.eval("location.href");
    browser.type_line(text);
    browser
        .wait_for(&format!("location.href !== {before} && document.readyState === 'complete'"), LIMIT)
        .unwrap_or_else(|| panic!("submitting {name}={text} loaded no page"));
}

#[test]
fn the_cockpit_finds_nodes_shows_capacity_and_failures_and_follows_new_deployments_live() {
    let grid = Grid::new();
    let at = |country: &str, city: &str| NodeOptions {
        location: Some((country.into(), city.into())),
        ..NodeOptions::default()
    };
    let ghent = grid.devnet.add_node(at("BE", "Ghent")).expect("node");
    let delft = grid.devnet.add_node(at("NL", "Delft")).expect("node");
    crate::network::create(&grid, "office", "10.63.0.0/16", &[&ghent, &delft]);
    let web =
        id_of(&grid.deploy(&ghent, "sleep 1000", &["--network", "office", "--secret-env", "TOKEN=hunter2", "--wait"]));
    let broken = id_of(&grid.deploy(&delft, "/bin/nosuchprog", &[]));
    let failed = grid.wait_for_result(&delft, &broken, "error", LIMIT);
    let reason = failed["result"]["payload"]["message"].as_str().unwrap().to_owned();
    assert!(reason.contains("is not in the image"), "{reason}");
    let sealed = grid.record(&web).unwrap()["workload"]["payload"]["data"]["secret_environment"]["TOKEN"]
        .as_str()
        .unwrap()
        .to_owned();
    let explorer = grid.devnet.explorer_url().trim_end_matches('/').to_owned();
    let shots = artefacts();

    // The node list, filtered by country, then by free memory (as a person types them).
    let mut browser = Browser::open(None);
    browser.goto(&format!("{explorer}/"));
    assert_eq!(listed(&mut browser), BTreeSet::from([ghent.id().to_owned(), delft.id().to_owned()]));
    filter(&mut browser, "country", "NL");
    assert_eq!(listed(&mut browser), BTreeSet::from([delft.id().to_owned()]), "filtered by country NL");
    browser.goto(&format!("{explorer}/"));
    let nodes = grid.cli(&["nodes"])["items"].as_array().unwrap().clone();
    let free_mru = |n: &Value| n["total"]["mru"].as_u64().unwrap() - n["used"]["mru"].as_u64().unwrap();
    let most = nodes.iter().map(free_mru).max().unwrap();
    filter(&mut browser, "free_mru", &most.to_string());
    let expected: BTreeSet<String> =
        nodes.iter().filter(|n| free_mru(n) >= most).map(|n| n["node_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed(&mut browser), expected, "filtered by free memory >= {most} MiB");
    filter(&mut browser, "free_mru", &(most + 1).to_string());
    assert!(listed(&mut browser).is_empty(), "a node with more than {most} MiB free is listed");
    assert!(browser.eval("document.querySelector('main').innerText").as_str().unwrap().contains("No node matches"));
    browser.eval("document.querySelector('form.filters [name=free_mru]').value = ''");
    filter(&mut browser, "country", "be");
    assert_eq!(listed(&mut browser), BTreeSet::from([ghent.id().to_owned()]), "countries match in any case");
    browser.screenshot("cockpit-nodes.png");

    // A node's page shows the capacity `zgrid nodes --json` reports.
    // (Links are followed with `goto`: a click's navigation races the next evaluation.)
    let link = browser.eval("document.querySelector('tr[data-node] a[href^=\"/nodes/\"]')?.getAttribute('href')");
    assert_eq!(link, format!("/nodes/{}", ghent.id()), "the list's link to the node");
    browser.goto(&format!("{explorer}{}", link.as_str().unwrap()));
    // Heartbeats change the used capacity: the page and the CLI are read until a heartbeat
    // falls between neither.
    let page = format!("{explorer}/nodes/{}", ghent.id());
    let read = |browser: &mut Browser| -> Value {
        browser.eval(
            "Object.fromEntries([...document.querySelectorAll('tr[data-unit]')].map(r => [r.dataset.unit,
                 { total: +r.querySelector('[data-total]').dataset.total, used: +r.querySelector('[data-used]').dataset.used }]))",
        )
    };
    let mut last = (Value::Null, Value::Null);
    let agreed = wait_until(LIMIT, || {
        let shown = read(&mut browser);
        let reported =
            grid.cli(&["nodes"])["items"].as_array().unwrap().iter().find(|n| n["node_id"] == ghent.id()).cloned()?;
        let as_cli =
            |unit: &str| serde_json::json!({ "total": reported["total"][unit], "used": reported["used"][unit] });
        let expected = serde_json::json!({ "cru": as_cli("cru"), "mru": as_cli("mru"), "sru": as_cli("sru"), "hru": as_cli("hru") });
        last = (shown.clone(), expected.clone());
        if shown == expected {
            Some(())
        } else {
            browser.goto(&page);
            None
        }
    });
    assert!(agreed.is_some(), "the node's page shows {} while `zgrid nodes` reports {}", last.0, last.1);
    let text = browser.eval("document.body.innerText").as_str().unwrap().to_owned();
    assert!(text.contains("BE, Ghent") && text.contains(&web), "{text}");
    browser.screenshot("cockpit-node.png");

    // Its farm's page lists the farm's nodes.
    let link = browser.eval("document.querySelector('a[href^=\"/farms/\"]')?.getAttribute('href')");
    browser.goto(&format!("{explorer}{}", link.as_str().expect("a link to the node's farm")));
    assert_eq!(
        listed(&mut browser),
        BTreeSet::from([ghent.id().to_owned(), delft.id().to_owned()]),
        "the farm's nodes"
    );
    browser.screenshot("cockpit-farm.png");

    // The deployer's page: the failed container's reason, and no sealed value.
    let key = grid.cli(&["id", "show"])["public_key"].as_str().unwrap().to_owned();
    browser.goto(&format!("{explorer}/users?name={key}"));
    let row = browser.eval(&format!("document.querySelector('tr[data-workload=\"{broken}\"]')?.innerText ?? ''"));
    assert!(row.as_str().unwrap().contains(&reason), "the failure's reason is not on the user page: {row}");
    let html = browser.eval("document.documentElement.outerHTML").as_str().unwrap().to_owned();
    assert!(!html.contains(&sealed) && !html.contains("hunter2"), "a sealed value is on the page");
    assert!(html.contains("Network") && html.contains("office"), "the network graph is missing");
    browser.screenshot("cockpit-user.png");

    // A new deployment appears on the open page without a reload.
    browser.wait_for("document.body.dataset.live === 'yes'", LIMIT).expect("the page never subscribed to changes");
    browser.eval("window.notReloaded = true");
    let fresh = id_of(&grid.deploy(&delft, "sleep 1000", &[]));
    let accepted = Instant::now();
    let selector = format!("window.notReloaded === true && !!document.querySelector('tr[data-workload=\"{fresh}\"]')");
    browser.wait_for(&selector, Duration::from_secs(10)).expect("the new workload never appeared on the open page");
    let seen = accepted.elapsed();
    assert!(seen <= Duration::from_secs(2), "the new workload took {seen:?} to appear");
    browser.screenshot("cockpit-user-live.png");

    // On a phone's screen, nothing but the tables' own scroll boxes is wider than the screen.
    let phone = serde_json::json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true });
    browser.call("Emulation.setDeviceMetricsOverride", phone);
    for (path, shot) in
        [("/", "cockpit-phone-nodes.png"), (&*format!("/nodes/{}", ghent.id()), "cockpit-phone-node.png")]
    {
        browser.goto(&format!("{explorer}{path}"));
        let wide = browser.eval("document.documentElement.scrollWidth - window.innerWidth");
        assert!(wide.as_i64().unwrap() <= 0, "{path} is {wide} px wider than a phone's screen");
        browser.screenshot(shot);
    }
    eprintln!("the cockpit's screenshots are in {}; a new deployment showed after {seen:?}", shots.display());

    // What a stranger types is refused with what to change, and changes nothing.
    let fetch = |browser: &mut Browser, path: &str| {
        browser.eval(&format!("fetch('{path}').then(async r => [r.status, await r.text()])"))
    };
    let bad = fetch(&mut browser, "/?free_mru=lots");
    assert_eq!(bad[0], 400);
    assert!(bad[1].as_str().unwrap().contains("free_mru must be a whole number"), "{bad}");
    assert_eq!(fetch(&mut browser, "/nodes/nonsense")[0], 404);
}
