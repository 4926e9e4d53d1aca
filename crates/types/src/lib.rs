//! Wire types, validation and signing shared by every zgrid part.
//!
//! This crate does no I/O (sealing secrets draws randomness from the operating system). The explorer, the node agent and the CLI all parse, validate and
//! verify through it, so a signature that verifies in one verifies in all.

pub mod api;
pub mod auth;
pub mod delete;
pub mod directory;
pub mod exec;
pub mod hub;
pub mod ids;
pub mod invitation;
pub mod keys;
pub mod logs;
pub mod remembered;
pub mod result;
pub mod sealed;
pub mod signing;
pub mod validate;
pub mod workload;

pub use delete::DeleteRequest;
pub use ids::{FarmId, NodeId, UserId, WorkloadId};
pub use keys::{Keypair, PublicKey, Signature};
pub use result::{ResultState, WorkloadResult};
pub use signing::{Signable, Signed};
pub use validate::ValidationError;
pub use workload::{WorkloadData, WorkloadKind, WorkloadSpec};

#[cfg(feature = "testing")]
pub mod testing;

/// Current Unix time in whole seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
