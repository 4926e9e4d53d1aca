//! Test harness: an explorer served on loopback over a throwaway SQLite or PostgreSQL database,
//! plus a small world of users, a farm and nodes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use tokio::sync::oneshot;
use zgrid_client::{ExplorerClient, new_workload_id};
use zgrid_explorer::{AppState, Config};
use zgrid_types::auth::RequestAuth;
use zgrid_types::directory::{Capacity, FarmRegistration, Location, NodeRegistration};
use zgrid_types::invitation::FarmInvitation;
use zgrid_types::workload::*;
use zgrid_types::{Keypair, NodeId, Signed, UserId, WorkloadData, WorkloadSpec};

pub use zgrid_explorer::testing::Backend;
use zgrid_explorer::testing::TempDatabase;

/// Generate one `#[tokio::test]` per backend for each listed `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(zgrid_explorer::testing::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(zgrid_explorer::testing::Backend::Postgres).await } )*
        }
    };
}

/// A running explorer.
pub struct TestExplorer {
    pub url: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _db: TempDatabase,
}

impl TestExplorer {
    pub async fn start(backend: Backend) -> Self {
        let db = TempDatabase::create(backend).await;
        let state = AppState::open(Config::new(db.url.clone())).await.expect("open explorer database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(zgrid_explorer::run(listener, state.clone(), async { stopped.await.unwrap_or(()) }));
        Self { url, state, stop: Some(stop), task: Some(task), _db: db }
    }

    pub fn client(&self) -> ExplorerClient {
        ExplorerClient::new(&self.url).expect("client")
    }

    pub fn signed(&self, key: &Keypair) -> ExplorerClient {
        self.client().with_key(key.clone())
    }

    /// Send raw bytes, signed by `key`, and return the status and JSON body.
    pub async fn raw(&self, key: &Keypair, method: &str, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let auth = RequestAuth::sign(key, method, path, zgrid_types::unix_now(), nonce, &body);
        self.send_with_auth(&auth.to_string(), method, path, body).await
    }

    /// Send a request with a given `Authorization` value (to replay a captured one).
    pub async fn send_with_auth(
        &self,
        auth: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .request(method.parse().expect("method"), format!("{}{path}", self.url))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("explorer task").expect("explorer stopped cleanly");
        }
    }
}

/// A registered user.
pub struct Party {
    pub key: Keypair,
    pub id: UserId,
    pub client: ExplorerClient,
}

/// Two users, a farm owned by the first, and two registered nodes.
pub struct World {
    pub ex: TestExplorer,
    pub alice: Party,
    pub bob: Party,
    pub farm: u64,
    pub node: Keypair,
    pub node2: Keypair,
}

pub fn key() -> Keypair {
    Keypair::from_seed(&rand::random())
}

pub fn node_registration(farm: u64, country: &str, city: &str, total: Capacity) -> NodeRegistration {
    NodeRegistration {
        farm_id: farm,
        hostname: format!("host-{city}"),
        total,
        location: Location { country: country.into(), city: city.into(), latitude: Some(50.8), longitude: Some(4.3) },
        public_endpoint: Some("192.0.2.10".parse().unwrap()),
        api_url: None,
        version: "test".into(),
        farm_invitation: None,
    }
}

/// An invitation into `farm` for `node`, valid for an hour, signed by `owner`.
pub fn invitation(owner: &Keypair, farm: u64, node: &Keypair) -> Signed<FarmInvitation> {
    zgrid_types::invitation::invite(owner, farm, Some(node.public()), zgrid_types::unix_now() + 3600)
}

/// Register `node` in `farm` in `country` and `city` with the consent of the farm's owner
/// `owner`.
pub async fn register_invited(
    ex: &TestExplorer,
    owner: &Keypair,
    farm: u64,
    node: &Keypair,
    place: [&str; 2],
    total: Capacity,
) {
    let reg = NodeRegistration {
        farm_invitation: Some(invitation(owner, farm, node)),
        ..node_registration(farm, place[0], place[1], total)
    };
    ex.signed(node).register_node(&reg).await.expect("register an invited node");
}

impl World {
    pub async fn new(backend: Backend) -> Self {
        Self::from(TestExplorer::start(backend).await).await
    }

    pub async fn from(ex: TestExplorer) -> Self {
        let mut parties = Vec::new();
        for name in ["alice", "bob"] {
            let key = key();
            let client = ex.signed(&key);
            let id = client.register_user(name, &format!("{name}@example.com")).await.expect("register").id;
            parties.push(Party { key, id, client });
        }
        let bob = parties.pop().unwrap();
        let alice = parties.pop().unwrap();
        let farm = alice
            .client
            .create_farm(&FarmRegistration { name: "farm1".into(), public_ips: vec![] })
            .await
            .expect("farm")
            .id;
        let (node, node2) = (key(), key());
        let total = Capacity { cru: 8, mru: 16384, sru: 512_000, hru: 0 };
        register_invited(&ex, &alice.key, farm, &node, ["BE", "Ghent"], total).await;
        register_invited(&ex, &alice.key, farm, &node2, ["EG", "Cairo"], total).await;
        Self { ex, alice, bob, farm, node, node2 }
    }

    pub fn spec(&self, owner: &Party, node: &NodeId, data: WorkloadData) -> WorkloadSpec {
        WorkloadSpec {
            id: new_workload_id(),
            version: 1,
            owner: owner.id,
            owner_key: owner.key.public(),
            node_id: *node,
            expires_at: zgrid_types::unix_now() + 3600,
            description: "test".into(),
            metadata: String::new(),
            data,
        }
    }

    pub fn signed(&self, owner: &Party, node: &NodeId, data: WorkloadData) -> Signed<WorkloadSpec> {
        Signed::sign(self.spec(owner, node, data), &owner.key)
    }
}

pub fn volume() -> WorkloadData {
    WorkloadData::Volume(Volume { size: 100, disk_type: DiskType::Ssd })
}

pub fn network_resource(name: &str, subnet: &str) -> WorkloadData {
    use base64::Engine;
    WorkloadData::NetworkResource(NetworkResource {
        name: name.into(),
        network_iprange: "10.20.0.0/16".parse().unwrap(),
        iprange: subnet.parse().unwrap(),
        wireguard_private_key_encrypted: hex::encode(zgrid_types::sealed::seal(
            &key().public(),
            &rand::random::<[u8; 32]>(),
        )),
        wireguard_public_key: base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
        wireguard_listen_port: 0,
        peers: vec![],
        egress: false,
    })
}

pub fn container(network: &str, ip: &str) -> WorkloadData {
    WorkloadData::Container(Container {
        flist: "https://hub.example/busybox.flist".into(),
        hub_url: String::new(),
        flist_hash: String::new(),
        environment: BTreeMap::from([("A".into(), "1".into())]),
        secret_environment: BTreeMap::new(),
        entrypoint: "/bin/sh -c 'echo hi'".into(),
        interactive: false,
        volumes: vec![],
        capacity: ContainerCapacity { cpu: 1, memory: 256, disk_size: 256, disk_type: DiskType::Ssd },
        network_connection: vec![NetworkConnection {
            network_id: network.into(),
            ipaddress: ip.parse().unwrap(),
            public_ipv6: false,
            yggdrasil_ip: false,
        }],
        logs: vec![],
        stats: vec![],
        probes: Probes::default(),
        open_ports: vec![],
    })
}

/// A Kubernetes master VM on `network` at `ip`.
pub fn kubernetes(network: &str, ip: &str) -> WorkloadData {
    WorkloadData::Kubernetes(Kubernetes {
        size: 1,
        flist: "https://hub.example/zgrid-kubernetes.flist".into(),
        hub_url: String::new(),
        flist_hash: String::new(),
        network_id: network.into(),
        ipaddress: ip.parse().unwrap(),
        cluster_secret: "v1:sealed".into(),
        master_ips: vec![],
        ssh_keys: vec![],
        datastore_endpoint: String::new(),
        disable_default_ingress: true,
        registries: vec![],
    })
}

/// A VM on `network` at `ip`, mounting `volumes`.
pub fn vm(network: &str, ip: &str, volumes: Vec<VolumeMount>) -> WorkloadData {
    WorkloadData::Vm(Vm {
        flist: "https://hub.example/debian-vm.flist".into(),
        hub_url: String::new(),
        flist_hash: String::new(),
        capacity: ContainerCapacity { cpu: 1, memory: 1024, disk_size: 2048, disk_type: DiskType::Ssd },
        network_id: network.into(),
        ipaddress: ip.parse().unwrap(),
        ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq me@laptop".into()],
        kernel_args: String::new(),
        environment: BTreeMap::new(),
        secret_environment: BTreeMap::new(),
        volumes,
    })
}
