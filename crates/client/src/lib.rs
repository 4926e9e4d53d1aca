//! The zgrid client SDK: identities kept in seed files, a typed explorer client that signs
//! every state-changing request, clients of hubs and of node agents' own API, all over HTTP or
//! HTTPS with the time limits and trusted CAs of one [`HttpOptions`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use zgrid_client::{ExplorerClient, Identity};
//! let me = Identity::generate("alice");
//! let explorer = ExplorerClient::new("http://127.0.0.1:8080")?.with_key(me.keypair.clone());
//! let user = explorer.register_user("alice", "alice@example.com").await?;
//! println!("registered as user {}", user.id);
//! # Ok(()) }
//! ```

mod explorer;
mod http;
mod hub;
mod identity;
pub mod network;
mod node;
mod transport;
mod websocket;

pub use explorer::{ExplorerClient, new_workload_id};
pub use http::{ClientError, ClientResult};
pub use hub::HubClient;
pub use identity::{Identity, IdentityError, IdentityStore, SEED_FORMAT, write_private};
pub use node::{ExecStream, NodeClient};
pub use transport::{Answer, DEFAULT_TIMEOUT, HttpClient, HttpOptions};
