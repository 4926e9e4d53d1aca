//! Background tasks of the agent that belong to one container each (statistics publishers, log
//! forwarders): started when the container is provisioned, replaced when it is provisioned
//! again, aborted when it is removed or the agent stops.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinHandle;

/// One kind of per-container task.
#[derive(Debug, Default)]
pub struct Tasks {
    running: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Tasks {
    /// Run `task` for container `id`, replacing the one it had.
    pub fn start(&self, id: &str, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(old) = self.running.lock().expect("lock").insert(id.to_owned(), tokio::spawn(task)) {
            old.abort();
        }
    }

    /// Stop container `id`'s task.
    pub fn stop(&self, id: &str) {
        if let Some(task) = self.running.lock().expect("lock").remove(id) {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.running.lock().expect("lock").values() {
            task.abort();
        }
    }
}
