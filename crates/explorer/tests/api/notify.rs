//! Several explorers on one PostgreSQL database: a notification on `zgrid_feed` from another
//! connection (another explorer's transaction) wakes this explorer's feed streams; when the
//! listening connection is lost, every stream re-reads once it is back, so a notification sent
//! meanwhile is not missed; the listener ends with the explorer.

use std::time::Duration;

use futures::StreamExt;
use sqlx::{Connection, PgConnection};
use zgrid_types::api::FeedEvent;

use crate::common::*;

/// The channel explorers announce changes on.
const CHANNEL: &str = "zgrid_feed";

/// Waiting bound for what arrives in milliseconds, generous for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(20);

/// How long a stream that must stay quiet is watched.
const QUIET: Duration = Duration::from_secs(1);

type Feed = std::pin::Pin<Box<dyn futures::Stream<Item = zgrid_client::ClientResult<FeedEvent>> + Send>>;

async fn next_event(feed: &mut Feed) -> FeedEvent {
    tokio::time::timeout(WAIT, feed.next()).await.expect("no feed event in time").expect("feed ended").expect("event")
}

async fn quiet(feed: &mut Feed) {
    if let Ok(event) = tokio::time::timeout(QUIET, feed.next()).await {
        panic!("the feed should be quiet, got {event:?}");
    }
}

/// The server processes listening on the channel in the database of `conn`.
async fn listeners(conn: &mut PgConnection) -> Vec<i32> {
    let sql =
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%zgrid_feed%'";
    sqlx::query_scalar(sql).fetch_all(conn).await.expect("read pg_stat_activity")
}

/// Wait until exactly `count` connections listen; their server processes.
async fn wait_listeners(conn: &mut PgConnection, count: usize) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pids = listeners(conn).await;
        if pids.len() == count {
            return pids;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} listeners, not {count}", pids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Change workload `id` as another explorer would, without telling anyone: give it the next
/// feed position.
async fn move_on_quietly(conn: &mut PgConnection, id: &str) {
    let sql = "WITH next AS (UPDATE counters SET value = value + 1 WHERE name = 'feed' RETURNING value) \
               UPDATE workloads SET feed_seq = (SELECT value FROM next) WHERE id = $1";
    let done = sqlx::query(sql).bind(id).execute(conn).await.expect("move the workload on");
    assert_eq!(done.rows_affected(), 1);
}

async fn announce(conn: &mut PgConnection, payload: &str) {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(conn).await.expect("pg_notify");
}

/// A world on PostgreSQL with node 1's feed open and one workload delivered; a connection of
/// its own to the database, and the workload's id.
async fn streaming() -> (World, Feed, PgConnection, String) {
    let w = World::new(Backend::Postgres).await;
    let mut conn = PgConnection::connect(&w.ex.state.config.database).await.expect("connect");
    wait_listeners(&mut conn, 1).await;
    let mut feed: Feed = Box::pin(w.ex.signed(&w.node).feed(0).await.unwrap());
    let a = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&a).await.unwrap();
    assert_eq!(next_event(&mut feed).await.record.workload, a);
    // The explorer's own notification of that change comes back through PostgreSQL too (after
    // the stream was woken in-process): let it pass, so it wakes nothing later.
    quiet(&mut feed).await;
    (w, feed, conn, a.payload.id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_from_another_explorer_wakes_the_feed_of_its_node() {
    let (w, mut feed, mut conn, id) = streaming().await;

    // Another explorer's change: nothing in this process knows of it.
    move_on_quietly(&mut conn, &id).await;
    quiet(&mut feed).await;
    // Its notification (another node's is ignored) wakes the stream, which reads the change.
    announce(&mut conn, &w.node2.public().to_string()).await;
    quiet(&mut feed).await;
    announce(&mut conn, &w.node.public().to_string()).await;
    let event = next_event(&mut feed).await;
    assert_eq!(event.record.workload.payload.id.to_string(), id);

    // An empty payload is some other change: the cockpit's count grows.
    let mut changes = w.ex.state.feed.changes();
    let before = *changes.borrow_and_update();
    announce(&mut conn, "").await;
    tokio::time::timeout(WAIT, changes.wait_for(|n| *n > before)).await.expect("counted").unwrap();

    // The listener ends when the explorer closes its feed (as it does when it shuts down).
    w.ex.state.feed.close();
    wait_listeners(&mut conn, 0).await;
    w.ex.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_its_listener_an_explorer_has_every_stream_read_again() {
    let (w, mut feed, mut conn, id) = streaming().await;
    let pid = wait_listeners(&mut conn, 1).await[0];
    let admin = std::env::var("ZGRID_TEST_POSTGRES").expect("ZGRID_TEST_POSTGRES");
    let mut admin = PgConnection::connect(&admin).await.expect("connect to the admin database");
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut conn).await.unwrap();
    let allow = |yes: bool| sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {yes}"));

    // The listening connection is cut and cannot come back yet; a change and its notification
    // are made meanwhile, and the notification is lost.
    sqlx::query(allow(false)).execute(&mut admin).await.expect("refuse connections");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut admin).await.expect("terminate");
    wait_listeners(&mut conn, 0).await;
    move_on_quietly(&mut conn, &id).await;
    announce(&mut conn, &w.node.public().to_string()).await;
    quiet(&mut feed).await;

    // Once it listens again, every stream reads from its cursor and finds the change.
    sqlx::query(allow(true)).execute(&mut admin).await.expect("allow connections");
    let event = next_event(&mut feed).await;
    assert_eq!(event.record.workload.payload.id.to_string(), id);
    assert_ne!(wait_listeners(&mut conn, 1).await[0], pid);
    w.ex.stop().await;
}
