//! End-to-end tests of the `zgrid` binary: the explorer as a real process, and the CLI verbs.

mod browser;
mod common;
mod grid;

mod bench;
mod clusters;
mod cockpit;
mod console;
mod crash;
mod exec;
mod exits;
mod flist;
mod hub;
mod k8s;
mod kubelet;
mod multi_explorer;
mod network;
mod node;
mod probes;
mod public;
mod readme;
mod redis;
mod tls;
mod verbs;
mod vm;
