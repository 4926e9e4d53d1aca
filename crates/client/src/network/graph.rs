//! A picture of the network in Graphviz DOT: a box per member (node id, subnet, endpoint or
//! "hidden"), an ellipse per access point, a line per tunnel and a dashed line between hidden
//! members, whose traffic goes through the relay.

use zgrid_types::NodeId;

use super::Network;
use super::peers::direct;

/// The first 8 characters of a node id: enough to tell nodes apart in a picture.
fn short(node: &NodeId) -> String {
    node.to_string().chars().take(8).collect()
}

/// `lines` as one quoted DOT string, with DOT's `\n` between them.
fn quoted(lines: &[&str]) -> String {
    let escaped: Vec<String> = lines.iter().map(|l| l.replace('\\', "\\\\").replace('"', "\\\"")).collect();
    format!("\"{}\"", escaped.join("\\n"))
}

fn node_ref(node: &NodeId) -> String {
    quoted(&[&node.to_string()])
}

fn access_id(subnet: ipnet::Ipv4Net) -> String {
    quoted(&[&format!("access {subnet}")])
}

impl Network {
    /// The network as a Graphviz DOT graph (render it with `dot -Tsvg`).
    pub fn dot(&self) -> String {
        let title = format!("network {} {}", self.name, self.cidr);
        let mut lines = vec![
            format!("graph {} {{", quoted(&[&self.name])),
            format!("  label={};", quoted(&[&title])),
            "  node [shape=box];".to_string(),
        ];
        for m in &self.members {
            let label = quoted(&[&short(&m.node_id), &m.subnet.to_string(), &m.reachability()]);
            lines.push(format!("  {} [label={label}];", node_ref(&m.node_id)));
        }
        for a in &self.access_points {
            let label = quoted(&["access point", &a.subnet.to_string()]);
            lines.push(format!("  {} [label={label}, shape=ellipse];", access_id(a.subnet)));
        }
        let via = self.relay().map_or_else(|| "no relay".to_string(), |r| format!("via {}", short(&r.node_id)));
        for (i, a) in self.members.iter().enumerate() {
            for b in &self.members[i + 1..] {
                let style =
                    if direct(a, b) { String::new() } else { format!(" [style=dashed, label={}]", quoted(&[&via])) };
                lines.push(format!("  {} -- {}{style};", node_ref(&a.node_id), node_ref(&b.node_id)));
            }
        }
        for a in &self.access_points {
            lines.push(format!("  {} -- {};", access_id(a.subnet), node_ref(&a.node_id)));
        }
        lines.push("}\n".to_string());
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::super::AccessPoint;
    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_graph_shows_members_access_points_and_tunnels() {
        let mut network = planned(&[(1, Some("1.1.1.1"), Some(7001)), (2, None, None), (3, None, None)]);
        network.access_points.push(AccessPoint { node_id: node(1), subnet: net("10.20.9.0/24"), public_key: key(9) });
        let (n1, n2, n3) = (node(1).to_string(), node(2).to_string(), node(3).to_string());
        let s1 = &n1[..8];
        let expected = format!(
            "graph \"web\" {{\n  label=\"network web 10.20.0.0/16\";\n  node [shape=box];\n\
             \x20 \"{n1}\" [label=\"{s1}\\n10.20.1.0/24\\n1.1.1.1:7001\"];\n\
             \x20 \"{n2}\" [label=\"{}\\n10.20.2.0/24\\nhidden\"];\n\
             \x20 \"{n3}\" [label=\"{}\\n10.20.3.0/24\\nhidden\"];\n\
             \x20 \"access 10.20.9.0/24\" [label=\"access point\\n10.20.9.0/24\", shape=ellipse];\n\
             \x20 \"{n1}\" -- \"{n2}\";\n\
             \x20 \"{n1}\" -- \"{n3}\";\n\
             \x20 \"{n2}\" -- \"{n3}\" [style=dashed, label=\"via {s1}\"];\n\
             \x20 \"access 10.20.9.0/24\" -- \"{n1}\";\n}}\n",
            &n2[..8],
            &n3[..8],
        );
        assert_eq!(network.dot(), expected);
    }

    #[test]
    fn public_members_without_a_port_say_so() {
        let network = planned(&[(1, Some("1.1.1.1"), None)]);
        assert!(network.dot().contains("1.1.1.1 (port not reported)"));
        assert_eq!(quoted(&["a\"b\\", "c"]), "\"a\\\"b\\\\\\nc\"");
    }
}
