//! Test support (feature `testing`): a throwaway database for an explorer under test, either an
//! SQLite file in a temporary directory or a database created on the PostgreSQL server named by
//! `ZGRID_TEST_POSTGRES` and dropped afterwards, even when the test fails.

use sqlx::Connection;

/// Which database engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A database that exists for the life of this value.
pub struct TempDatabase {
    /// What to pass as the explorer's database.
    pub url: String,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TempDatabase {
    /// Create an empty database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        match backend {
            Backend::Sqlite => {
                Self { url: dir.path().join("explorer.sqlite").display().to_string(), _dir: dir, postgres: None }
            }
            Backend::Postgres => {
                let admin = std::env::var("ZGRID_TEST_POSTGRES").expect(
                    "ZGRID_TEST_POSTGRES must name a PostgreSQL server for the PostgreSQL half of the suite, \
                     e.g. postgres://postgres:zgrid@127.0.0.1:5432/postgres (scripts/test starts one)",
                );
                sqlx::any::install_default_drivers();
                let name = format!("zgrid_test_{:016x}", rand::random::<u64>());
                let mut conn =
                    sqlx::AnyConnection::connect(&admin).await.expect("connect to the test PostgreSQL server");
                let sql = format!("CREATE DATABASE {name}");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("create a test database");
                let url = format!("{}/{name}", admin.rsplit_once('/').expect("a URL ending in a database name").0);
                Self { url, _dir: dir, postgres: Some((admin, name)) }
            }
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else { return };
        // Drop may run inside or outside a runtime: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            })
        })
        .join();
    }
}
