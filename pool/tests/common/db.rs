//! Helpers for tests against the real MariaDB, PostgreSQL and SQLite on this machine.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use longlink_pool::db::{Db, Driver};

pub fn mysql_url() -> String {
    std::env::var("LONGLINK_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub fn postgres_url() -> String {
    std::env::var("LONGLINK_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A name no other test (or test process) uses: tests run in parallel.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    );
    // Used as a table, database or application name: MySQL's identifiers stop at 64
    // characters and PostgreSQL's at 63 bytes.
    assert!(
        name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{name:?} is not a usable identifier"
    );
    name
}

/// `?` placeholders as the driver wants them (`$1`, `$2`… on PostgreSQL).
pub fn sql(db: &Db, text: &str) -> String {
    if db.driver() != Driver::Postgres {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A scratch SQLite file in a fresh temp dir (kept alive by the returned guard).
pub fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/test.db", dir.path().display());
    (dir, url)
}

/// A MySQL database of its own for a test, so the server's process list can be filtered
/// to this test's connections. Returns (admin handle, dsn for the test database).
pub async fn mysql_own_database(name: &str) -> (Db, String) {
    let admin = Db::open(&mysql_url()).unwrap();
    admin
        .exec(&format!("CREATE DATABASE IF NOT EXISTS {name}"), ())
        .await
        .unwrap();
    let base = mysql_url();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    (admin, format!("{prefix}/{name}"))
}

/// Connections the MySQL server has open to database `name`.
pub async fn mysql_connections_to(admin: &Db, name: &str) -> i64 {
    let (n,): (i64,) = admin
        .query_one(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?",
            (name,),
        )
        .await
        .unwrap();
    n
}

/// Connections PostgreSQL has open with `application_name`.
pub async fn pg_connections_named(admin: &Db, name: &str) -> i64 {
    let (n,): (i64,) = admin
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1",
            (name,),
        )
        .await
        .unwrap();
    n
}

/// A TCP proxy in front of a real database: stopping it is the database going down
/// (every connection cut, new ones refused); starting it again on the same port brings it
/// back.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let upstream = tokio::net::lookup_host(upstream)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            task: std::sync::Mutex::new(None),
            cut: tokio::sync::watch::channel(0).0,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let cut = self.cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// The database "goes down": new connections refused, open ones cut.
    pub async fn stop(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.cut.send_modify(|n| *n += 1);
        // Let the connection tasks see the cut and close their sockets.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    /// The database "comes back" on the same address.
    pub async fn restart(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        self.serve(listener);
    }
}
