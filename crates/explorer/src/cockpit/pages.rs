//! The cockpit's pages, rendered on the server with maud (which escapes every value, so names
//! and messages that strangers choose cannot inject markup). Each page's changing part is its
//! `<main>`; `script.js` swaps it for a fresh one when the explorer reports a change.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, html};
use zgrid_types::api::{KeyPage, NodeFilter, WorkloadRecord};
use zgrid_types::directory::{Capacity, Farm, Node, User};
use zgrid_types::result::WorkloadResult;
use zgrid_types::workload::{DiskType, WorkloadData};
use zgrid_types::{NodeId, WorkloadId};

use super::query::Summary;
use crate::db::nodes::NodeOrder;

/// A whole page: its `title` (also its heading), the part that stays while the page is live
/// (`fixed`, e.g. a filter form) and `main`, the part that is loaded again.
pub fn layout(title: &str, fixed: Markup, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · zgrid cockpit" }
                link rel="stylesheet" href="/cockpit/style.css";
                script src="/cockpit/script.js" defer {}
            }
            body {
                header {
                    nav aria-label="Cockpit" {
                        a.brand href="/" { "zgrid cockpit" }
                        form.find action="/users" method="get" role="search" {
                            label for="find-user" { "User" }
                            input #find-user type="search" name="name" placeholder="name, id or key" required;
                            button type="submit" { "Open" }
                        }
                    }
                }
                div.top { h1 { (title) } (fixed) }
                main #live { (main) }
                footer { "Read-only view of this explorer's public API. Live: updates as the explorer learns." }
            }
        }
    }
}

/// A page titled `title` saying `what` (what was not found, or what to change).
pub fn message(title: &str, what: &str) -> Markup {
    layout(title, html! {}, html! { p { (what) } p { a href="/" { "Back to the grid" } } })
}

/// The node list's filter and sort form (kept while the list refreshes).
pub fn node_filter(filter: &NodeFilter, order: NodeOrder) -> Markup {
    let number = |v: Option<u64>| v.map(|v| v.to_string());
    html! {
        form.filters method="get" action="/" aria-label="Filter nodes" {
            label { "Farm id " input type="number" name="farm" min="1" value=[number(filter.farm)]; }
            label { "Country " input type="text" name="country" size="10" value=[filter.country.as_deref()]; }
            label { "City " input type="text" name="city" size="10" value=[filter.city.as_deref()]; }
            label { "Free CPUs ≥ " input type="number" name="free_cru" min="0" value=[number(filter.free_cru)]; }
            label { "Free memory ≥ (MiB) " input type="number" name="free_mru" min="0" value=[number(filter.free_mru)]; }
            label { "Free SSD ≥ (MiB) " input type="number" name="free_sru" min="0" value=[number(filter.free_sru)]; }
            label { "Free HDD ≥ (MiB) " input type="number" name="free_hru" min="0" value=[number(filter.free_hru)]; }
            label {
                "Status "
                select name="alive" {
                    option value="" selected[filter.alive.is_none()] { "any" }
                    option value="true" selected[filter.alive == Some(true)] { "alive" }
                    option value="false" selected[filter.alive == Some(false)] { "down" }
                }
            }
            label {
                "Sort by "
                select name="sort" {
                    @for o in NodeOrder::ALL {
                        option value=(o.name()) selected[*o == order] { (o.label()) }
                    }
                }
            }
            button type="submit" { "Apply" }
            a href="/" { "Clear" }
        }
    }
}

/// The grid at a glance and one page of nodes.
pub fn overview(
    summary: &Summary,
    nodes: &KeyPage<Node>,
    farms: &HashMap<u64, String>,
    now: i64,
    query: &str,
) -> Markup {
    let free = minus(summary.total, summary.used);
    html! {
        section aria-label="Totals" {
            dl.cards {
                div { dt { "Farms" } dd { (summary.farms) } }
                div { dt { "Nodes alive" } dd { (summary.alive) " of " (summary.nodes) } }
                div { dt { "Free CPUs" } dd { (free.cru) " of " (summary.total.cru) } }
                div { dt { "Free memory" } dd { (mib(free.mru)) " of " (mib(summary.total.mru)) } }
                div { dt { "Free SSD" } dd { (mib(free.sru)) " of " (mib(summary.total.sru)) } }
                div { dt { "Free HDD" } dd { (mib(free.hru)) " of " (mib(summary.total.hru)) } }
            }
        }
        section aria-labelledby="wl" {
            h2 #wl { "Workloads" }
            @if summary.workloads.is_empty() { p { "None yet." } } @else {
                table {
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "State" } th.num scope="col" { "Count" } } }
                    tbody {
                        @for (kind, state, n) in &summary.workloads {
                            tr { td { (kind) } td { span class=(format!("state {state}")) { (state) } } td.num { (n) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="nodes" {
            h2 #nodes { "Nodes" }
            (node_table(&nodes.items, farms, now))
            (pager(nodes.next.as_deref(), "/", query))
        }
    }
}

/// A table of nodes with their free capacity.
pub fn node_table(nodes: &[Node], farms: &HashMap<u64, String>, now: i64) -> Markup {
    html! {
        @if nodes.is_empty() { p { "No node matches." } } @else {
            div.scroll {
                table.nodes {
                    thead { tr {
                        th scope="col" { "Node" } th scope="col" { "Host" } th scope="col" { "Farm" }
                        th scope="col" { "Location" } th.num scope="col" { "Free CPUs" }
                        th.num scope="col" { "Free memory" } th.num scope="col" { "Free SSD" }
                        th.num scope="col" { "Free HDD" } th scope="col" { "Version" } th scope="col" { "Status" }
                    } }
                    tbody {
                        @for n in nodes {
                            @let free = minus(n.total, n.used);
                            tr data-node=(n.node_id) {
                                td { a href=(format!("/nodes/{}", n.node_id)) { code { (short(&n.node_id.to_string())) } } " " (copy(&n.node_id.to_string())) }
                                td { (n.hostname) }
                                td { a href=(format!("/farms/{}", n.farm_id)) { (farms.get(&n.farm_id).map_or_else(|| n.farm_id.to_string(), Clone::clone)) } }
                                td { (place(n)) }
                                td.num { (free.cru) }
                                td.num data-free-mru=(free.mru) { (mib(free.mru)) }
                                td.num { (mib(free.sru)) }
                                td.num { (mib(free.hru)) }
                                td { (n.version) }
                                td { (status(n, now)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One node: where it is, its capacity now and over the last day, and what runs on it.
pub fn node_page(
    node: &Node,
    farm: Option<&Farm>,
    usage: &[(i64, Capacity)],
    workloads: &[WorkloadRecord],
    count: i64,
    now: i64,
) -> Markup {
    let free = minus(node.total, node.used);
    let id = node.node_id.to_string();
    html! {
        dl.facts {
            dt { "Id" } dd { code #node-id { (id) } " " (copy(&id)) }
            dt { "Farm" } dd { a href=(format!("/farms/{}", node.farm_id)) { (farm.map_or_else(|| node.farm_id.to_string(), |f| f.name.clone())) } }
            dt { "Location" } dd { (place(node)) }
            dt { "Status" } dd { (status(node, now)) }
            dt { "Last seen" } dd { (ago(now - node.last_seen)) }
            dt { "Registered" } dd { (ago(now - node.created_at)) }
            dt { "Version" } dd { (node.version) }
            dt { "Public endpoint" } dd { (node.public_endpoint.map_or_else(|| "none".to_owned(), |e| e.to_string())) }
            dt { "Hypervisor" } dd { (node.hypervisor.as_deref().unwrap_or("not reported")) }
            dt { "WireGuard" } dd { (node.wireguard.as_deref().unwrap_or("not reported")) }
            dt { "Public IPv6" } dd { (node.public_ipv6.map_or_else(|| "none".to_owned(), |p| p.to_string())) }
            dt { "Yggdrasil" } dd { (node.yggdrasil.map_or_else(|| "none".to_owned(), |p| p.to_string())) }
        }
        h2 { "Capacity" }
        div.scroll {
            table.capacity {
                thead { tr { th scope="col" { "Resource" } th.num scope="col" { "Total" } th.num scope="col" { "Used" } th.num scope="col" { "Free" } th scope="col" { "In use" } } }
                tbody {
                    (capacity_row("CPUs", "cru", node.total.cru, node.used.cru, free.cru, |v| v.to_string()))
                    (capacity_row("Memory", "mru", node.total.mru, node.used.mru, free.mru, mib))
                    (capacity_row("SSD", "sru", node.total.sru, node.used.sru, free.sru, mib))
                    (capacity_row("HDD", "hru", node.total.hru, node.used.hru, free.hru, mib))
                }
            }
        }
        h2 { "Use over time" }
        (usage_chart(node.total, usage, now))
        h2 { "Workloads here " small { "(" (count) " active)" } }
        (workload_table(workloads, &HashMap::new(), true, now))
    }
}

fn capacity_row(name: &str, unit: &str, total: u64, used: u64, free: u64, show: impl Fn(u64) -> String) -> Markup {
    html! {
        tr data-unit=(unit) {
            th scope="row" { (name) }
            td.num data-total=(total) { (show(total)) }
            td.num data-used=(used) { (show(used)) }
            td.num data-free=(free) { (show(free)) }
            td { meter min="0" max=(total.max(1)) value=(used) aria-label=(format!("{name} in use")) { (used) " of " (total) } }
        }
    }
}

/// Memory and CPU in use per 5-minute bucket, as a share of the node's total, in an SVG that
/// spans the history there is (at least an hour, at most the day kept).
fn usage_chart(total: Capacity, usage: &[(i64, Capacity)], now: i64) -> Markup {
    let Some((first, _)) = usage.first() else {
        return html! { p { "No heartbeat recorded yet." } };
    };
    let (width, height) = (600.0, 120.0);
    let span = (now - first).clamp(3600, crate::db::nodes::USAGE_KEEP_SECS);
    let x = |at: i64| width - ((now - at) as f64 / span as f64).clamp(0.0, 1.0) * width;
    let y = |used: u64, of: u64| height - (used as f64 / of.max(1) as f64).clamp(0.0, 1.0) * height;
    // Each sample holds until the next; the last one until now.
    let line = |pick: &dyn Fn(&Capacity) -> (u64, u64)| {
        let mut points = Vec::with_capacity(usage.len() * 2);
        for (n, (at, c)) in usage.iter().enumerate() {
            let (used, of) = pick(c);
            let until = usage.get(n + 1).map_or(now, |(next, _)| *next);
            points.push(format!("{:.1},{:.1} {:.1},{:.1}", x(*at), y(used, of), x(until), y(used, of)));
        }
        points.join(" ")
    };
    let memory = line(&|c| (c.mru, total.mru));
    let cpu = line(&|c| (c.cru, total.cru));
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(format!("Memory and CPUs in use over the last {}", hours(span))) {
                polyline.mem points=(memory) {}
                polyline.cpu points=(cpu) {}
            }
            figcaption { span.mem { "■ memory" } " " span.cpu { "■ CPUs" } " in use, share of total, over the last " (hours(span)) " (" (usage.len()) " five-minute samples)" }
        }
    }
}

/// A farm and its nodes.
pub fn farm_page(farm: &Farm, owner: Option<&User>, nodes: &KeyPage<Node>, now: i64, query: &str) -> Markup {
    let names = HashMap::from([(farm.id, farm.name.clone())]);
    html! {
        dl.facts {
            dt { "Id" } dd { (farm.id) }
            dt { "Owner" } dd { @match owner { Some(u) => a href=(format!("/users/{}", u.id)) { (u.name) }, None => (farm.owner) } }
            dt { "Public IPs" } dd {
                @if farm.public_ips.is_empty() { "none" }
                @for ip in &farm.public_ips { code { (ip.address) } " via " code { (ip.gateway) } " " }
            }
            dt { "Created" } dd { (ago(now - farm.created_at)) }
        }
        h2 { "Nodes" }
        (node_table(&nodes.items, &names, now))
        (pager(nodes.next.as_deref(), &format!("/farms/{}", farm.id), query))
    }
}

/// The state filter of a user's workloads.
pub fn state_filter(user: &User, state: Option<&str>) -> Markup {
    html! {
        nav.states aria-label="Workload state" {
            "Show: "
            @for (label, value) in [("all", None), ("active", Some("active")), ("deleted", Some("deleted")), ("expired", Some("expired"))] {
                @let href = match value { Some(v) => format!("/users/{}?state={v}", user.id), None => format!("/users/{}", user.id) };
                a href=(href) aria-current=[(state == value).then_some("page")] { (label) }
            }
        }
    }
}

/// A user's workloads with their latest results and history, and their networks.
pub fn user_page(
    user: &User,
    workloads: &KeyPage<WorkloadRecord>,
    history: &HashMap<WorkloadId, Vec<(i64, WorkloadResult)>>,
    networked: &[WorkloadRecord],
    now: i64,
    query: &str,
) -> Markup {
    let key = user.public_key.to_string();
    html! {
        dl.facts {
            dt { "Id" } dd { (user.id) }
            dt { "Key" } dd { code { (key) } " " (copy(&key)) }
            dt { "Registered" } dd { (ago(now - user.created_at)) }
        }
        h2 { "Workloads" }
        (workload_table(&workloads.items, history, false, now))
        (pager(workloads.next.as_deref(), &format!("/users/{}", user.id), query))
        h2 { "Networks" }
        (networks(networked))
    }
}

/// Workloads with their state, node, expiry and the node's latest result; with `history`,
/// each row can open the results before it.
fn workload_table(
    workloads: &[WorkloadRecord],
    history: &HashMap<WorkloadId, Vec<(i64, WorkloadResult)>>,
    show_owner: bool,
    now: i64,
) -> Markup {
    html! {
        @if workloads.is_empty() { p { "None." } } @else {
            div.scroll {
                table.workloads {
                    thead { tr {
                        th scope="col" { "Workload" } th scope="col" { "Kind" } th scope="col" { "What" }
                        th scope="col" { "State" } th scope="col" { @if show_owner { "Owner" } @else { "Node" } }
                        th scope="col" { "Expires" } th scope="col" { "Node's latest result" }
                    } }
                    tbody {
                        @for w in workloads {
                            @let spec = &w.workload.payload;
                            @let id = spec.id.to_string();
                            tr data-workload=(id) {
                                td { code { (id) } " " (copy(&id)) @if !spec.description.is_empty() { br; small { (spec.description) } } }
                                td { (spec.data.kind().as_str()) }
                                td { (what(&spec.data)) }
                                td { span class=(format!("state {}", w.state.as_str())) { (w.state.as_str()) } }
                                td {
                                    @if show_owner { a href=(format!("/users/{}", spec.owner)) { "user " (spec.owner) } }
                                    @else { (node_link(&spec.node_id)) }
                                }
                                td { @if w.state.as_str() == "active" { (until(spec.expires_at - now)) } @else { "—" } }
                                td.result {
                                    @match &w.result {
                                        Some(r) => (result_line(&r.payload)),
                                        None => span.muted { "none yet" },
                                    }
                                    @if let Some(past) = history.get(&spec.id).filter(|h| h.len() > 1) {
                                        details {
                                            summary { "history (" (past.len()) ")" }
                                            ol.history {
                                                @for (at, r) in past {
                                                    li { time { (ago(now - at)) } " v" (r.version) " " (result_line(r)) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn result_line(r: &WorkloadResult) -> Markup {
    let state = r.state.as_str();
    html! {
        span class=(format!("state {state}")) { (state) }
        @if !r.message.is_empty() { " " span.message { (r.message) } }
    }
}

/// What a workload is, in a few words; never a sealed value.
fn what(data: &WorkloadData) -> String {
    match data {
        WorkloadData::NetworkResource(n) => format!("network {} ({})", n.name, n.iprange),
        WorkloadData::Container(c) => {
            format!("{} · {} CPU, {}", last_part(&c.flist), c.capacity.cpu, mib(c.capacity.memory))
        }
        WorkloadData::Volume(v) => {
            format!("{} {}", mib(v.size), if v.disk_type == DiskType::Ssd { "SSD" } else { "HDD" })
        }
        WorkloadData::Kubernetes(k) => format!("Kubernetes size {} on {}", k.size, k.network_id),
        WorkloadData::Vm(v) => {
            format!("VM {} · {} CPU, {}", last_part(&v.flist), v.capacity.cpu, mib(v.capacity.memory))
        }
    }
}

fn last_part(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Each private network of the owner as a graph: its nodes' shares (which all peer with each
/// other over WireGuard) on a circle, and the workloads attached to each.
fn networks(networked: &[WorkloadRecord]) -> Markup {
    let mut by_name: Vec<(&str, Vec<&WorkloadRecord>)> = Vec::new();
    for w in networked {
        let name = match &w.workload.payload.data {
            WorkloadData::NetworkResource(n) => n.name.as_str(),
            other => match other.network_attachment() {
                Some((name, _)) => name,
                None => continue,
            },
        };
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, members)) => members.push(w),
            None => by_name.push((name, vec![w])),
        }
    }
    html! {
        @if by_name.is_empty() { p { "No private network." } }
        @for (name, members) in &by_name { (network_graph(name, members)) }
    }
}

fn network_graph(name: &str, members: &[&WorkloadRecord]) -> Markup {
    let shares: Vec<(&NodeId, String)> = members
        .iter()
        .filter_map(|w| match &w.workload.payload.data {
            WorkloadData::NetworkResource(n) => Some((&w.workload.payload.node_id, n.iprange.to_string())),
            _ => None,
        })
        .collect();
    // Wider than high: members' labels run to the right of their dots.
    let (width, height, radius) = (640.0_f64, 420.0_f64, 130.0_f64);
    let centre = (width / 2.0, height / 2.0);
    let at = |i: usize, r: f64| {
        let angle = std::f64::consts::TAU * i as f64 / shares.len().max(1) as f64 - std::f64::consts::FRAC_PI_2;
        (centre.0 + r * angle.cos(), centre.1 + r * angle.sin())
    };
    html! {
        figure.network {
            svg viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(format!("Network {name}: {} nodes", shares.len())) {
                @for i in 0..shares.len() {
                    @for j in (i + 1)..shares.len() {
                        @let ((x1, y1), (x2, y2)) = (at(i, radius), at(j, radius));
                        line.peer x1=(fmt(x1)) y1=(fmt(y1)) x2=(fmt(x2)) y2=(fmt(y2)) {}
                    }
                }
                @for (i, (node, subnet)) in shares.iter().enumerate() {
                    @let (x, y) = at(i, radius);
                    @let attached: Vec<String> = members.iter().filter(|w| &w.workload.payload.node_id == *node)
                        .filter_map(|w| w.workload.payload.data.network_attachment().map(|(_, ip)| format!("{} {}", w.workload.payload.data.kind().as_str(), ip))).collect();
                    g {
                        a href=(format!("/nodes/{node}")) {
                            circle.share cx=(fmt(x)) cy=(fmt(y)) r="12" {}
                            text x=(fmt(x)) y=(fmt(y - 18.0)) text-anchor="middle" { (short(&node.to_string())) " " (subnet) }
                        }
                        @for (k, label) in attached.iter().enumerate() {
                            @let (mx, my) = at(i, radius + 34.0 + 16.0 * k as f64);
                            circle.member cx=(fmt(mx)) cy=(fmt(my)) r="5" {}
                            text.member x=(fmt(mx + 8.0)) y=(fmt(my + 4.0)) { (label) }
                        }
                    }
                }
            }
            figcaption { "Network " strong { (name) } ": " (shares.len()) " nodes, each peering with every other" }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// Links to the first page (when this is not it) and to the next one (`next`, its key),
/// keeping the other query parameters. Pages are by key, so there is no page count.
fn pager(next: Option<&str>, path: &str, query: &str) -> Markup {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "after" && k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let later = url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "after" && !v.is_empty());
    let link = |after: Option<&str>| {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        out.extend_pairs(&kept);
        if let Some(key) = after {
            out.append_pair("after", key);
        }
        let query = out.finish();
        if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
    };
    html! {
        @if later || next.is_some() {
            nav.pager aria-label="Pages" {
                @if later { a rel="first" href=(link(None)) { "← first page" } " " }
                @if let Some(key) = next { a rel="next" href=(link(Some(key))) { "next page →" } }
            }
        }
    }
}

/// Where a node is: country, city and coordinates, as far as it said.
fn place(node: &Node) -> String {
    let l = &node.location;
    let mut parts: Vec<String> = [&l.country, &l.city].into_iter().filter(|s| !s.is_empty()).cloned().collect();
    if let (Some(lat), Some(lon)) = (l.latitude, l.longitude) {
        parts.push(format!("({lat}, {lon})"));
    }
    if parts.is_empty() { "not given".to_owned() } else { parts.join(", ") }
}

fn node_link(node: &NodeId) -> Markup {
    html! { a href=(format!("/nodes/{node}")) { code { (short(&node.to_string())) } } }
}

fn status(node: &Node, now: i64) -> Markup {
    html! {
        @if node.alive { span.state.ok { "alive" } } @else { span.state.error { "down" } " · seen " (ago(now - node.last_seen)) }
    }
}

/// A button that copies `text` (for the CLI).
fn copy(text: &str) -> Markup {
    html! { button.copy type="button" data-copy=(text) aria-label=(format!("Copy {text}")) { "copy" } }
}

/// The first 8 characters of an id, as `zgrid live` shows them.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn minus(total: Capacity, used: Capacity) -> Capacity {
    Capacity {
        cru: total.cru.saturating_sub(used.cru),
        mru: total.mru.saturating_sub(used.mru),
        sru: total.sru.saturating_sub(used.sru),
        hru: total.hru.saturating_sub(used.hru),
    }
}

/// MiB for people: `512 MiB`, `1.5 GiB`, `2.0 TiB`.
pub fn mib(v: u64) -> String {
    match v {
        v if v >= 1 << 20 => format!("{:.1} TiB", v as f64 / (1u64 << 20) as f64),
        v if v >= 1 << 10 => format!("{:.1} GiB", v as f64 / 1024.0),
        v => format!("{v} MiB"),
    }
}

/// `secs` ago, for people.
fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// A span of `secs`, in whole hours.
fn hours(secs: i64) -> String {
    match (secs + 1799) / 3600 {
        1 => "hour".to_owned(),
        h => format!("{h} hours"),
    }
}

/// In `secs`, for people.
fn until(secs: i64) -> String {
    match secs {
        s if s <= 0 => "due now".to_owned(),
        s if s < 3600 => format!("in {} min", (s + 59) / 60),
        s if s < 86_400 => format!("in {} h", s / 3600),
        s => format!("in {} days", s / 86_400),
    }
}

/// The stylesheet, as served.
pub const STYLE: &str = include_str!("assets/style.css");
/// The script that keeps pages live and copies ids, as served.
pub const SCRIPT: &str = include_str!("assets/script.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(1536), "1.5 GiB");
        assert_eq!(mib(3 << 20), "3.0 TiB");
        assert_eq!(ago(5), "5 s ago");
        assert_eq!(ago(7200), "2 h ago");
        assert_eq!(until(90), "in 2 min");
        assert_eq!(until(-1), "due now");
    }

    #[test]
    fn what_strangers_write_is_escaped() {
        let page = message("Not found", "<script>alert(1)</script>").into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn pages_keep_their_filters() {
        let html = pager(Some("k2"), "/", "country=be&after=k1&sort=free_mru").into_string();
        assert!(html.contains(r#"href="/?country=be&amp;sort=free_mru""#), "the first page: {html}");
        assert!(html.contains(r#"href="/?country=be&amp;sort=free_mru&amp;after=k2""#), "{html}");
        let first = pager(Some("k1"), "/farms/1", "").into_string();
        assert!(first.contains(r#"href="/farms/1?after=k1""#) && !first.contains("first page"), "{first}");
        assert_eq!(pager(None, "/", "").into_string(), "", "one page needs no links");
    }
}
