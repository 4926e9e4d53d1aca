//! Background tasks of the agent that belong to one container each (statistics publishers,
//! output forwarders, consoles): started when the container is provisioned, aborted when it is
//! provisioned again or removed, or when the agent stops.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinHandle;

/// The agent-side tasks of each container.
#[derive(Debug, Default)]
pub struct Tasks {
    running: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
}

impl Tasks {
    /// Run `task` for container `id`, beside its others.
    pub fn start(&self, id: &str, task: impl Future<Output = ()> + Send + 'static) {
        self.running.lock().expect("lock").entry(id.to_owned()).or_default().push(tokio::spawn(task));
    }

    /// Stop every task of container `id`.
    pub fn stop(&self, id: &str) {
        for task in self.running.lock().expect("lock").remove(id).unwrap_or_default() {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.running.lock().expect("lock").values().flatten() {
            task.abort();
        }
    }
}
