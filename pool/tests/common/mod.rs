//! Test helpers: a TCP server that counts its live connections, and a manager that talks to
//! it (connect = TCP connect, check = one-byte ping). Faults are switched on per test.
#![allow(dead_code, unreachable_pub)]

pub mod db;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use longlink_pool::Manager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A server on 127.0.0.1 that answers `P` with `O` and counts open connections.
pub struct FakeServer {
    pub addr: SocketAddr,
    live: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    kill: watch::Sender<u64>,
    stop: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = FakeServer {
            addr,
            live: Arc::new(AtomicUsize::new(0)),
            accepted: Arc::new(AtomicUsize::new(0)),
            kill: watch::channel(0).0,
            stop: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let live = Arc::clone(&self.live);
        let accepted = Arc::clone(&self.accepted);
        let kill = self.kill.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                live.fetch_add(1, SeqCst);
                accepted.fetch_add(1, SeqCst);
                let live = Arc::clone(&live);
                let mut killed = kill.subscribe();
                tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    loop {
                        tokio::select! {
                            read = socket.read(&mut byte) => match read {
                                Ok(1) if byte[0] == b'P' => {
                                    if socket.write_all(b"O").await.is_err() { break }
                                }
                                Ok(1) => {}
                                _ => break,
                            },
                            _ = killed.changed() => break,
                        }
                    }
                    live.fetch_sub(1, SeqCst);
                });
            }
        });
        *self.stop.lock().unwrap() = Some(task);
    }

    /// Connections open on the server side now.
    pub fn live(&self) -> usize {
        self.live.load(SeqCst)
    }

    /// Connections ever accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    /// Waits until the server-side count is `n` (connections close asynchronously).
    pub async fn wait_live(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.live() != n {
            assert!(
                Instant::now() < deadline,
                "server has {} live connections, expected {n}",
                self.live()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the server has accepted `n` connections in all, then a little longer to
    /// make sure no more arrive.
    pub async fn settle_accepted(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.accepted() < n {
            assert!(
                Instant::now() < deadline,
                "server accepted {}, expected {n}",
                self.accepted()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(self.accepted(), n, "more connections than expected");
    }

    /// Closes every open connection from the server side (like `KILL`). Only connections
    /// the server has accepted are closed: call `wait_live` first.
    pub fn kill_all(&self) {
        self.kill.send_modify(|n| *n += 1);
    }

    /// Stops accepting: connects are refused (the port is released before this returns).
    pub async fn stop_accepting(&self) {
        let task = self.stop.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Accepts again on the same address.
    pub async fn resume_accepting(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        self.serve(listener);
    }
}

/// Faults and delays a test can switch on.
#[derive(Default)]
pub struct Faults {
    pub connect_delay_ms: AtomicU64,
    pub check_delay_ms: AtomicU64,
    pub fail_checks: AtomicBool,
    pub connects: AtomicUsize,
    pub checks: AtomicUsize,
    pub resets: AtomicUsize,
}

/// A manager whose connections are TCP connections to a [`FakeServer`].
#[derive(Clone)]
pub struct TcpManager {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
}

impl TcpManager {
    pub fn new(server: &FakeServer) -> TcpManager {
        TcpManager {
            addr: server.addr,
            faults: Arc::new(Faults::default()),
        }
    }
}

impl Manager for TcpManager {
    type Connection = TcpStream;
    type Error = io::Error;

    async fn connect(&self) -> io::Result<TcpStream> {
        self.faults.connects.fetch_add(1, SeqCst);
        let delay = self.faults.connect_delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn check(&self, conn: &mut TcpStream) -> io::Result<()> {
        self.faults.checks.fetch_add(1, SeqCst);
        let delay = self.faults.check_delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.faults.fail_checks.load(SeqCst) {
            return Err(io::Error::other("check failed (injected)"));
        }
        conn.write_all(b"P").await?;
        let mut byte = [0u8; 1];
        match conn.read(&mut byte).await? {
            1 if byte[0] == b'O' => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )),
        }
    }

    async fn reset(&self, _conn: &mut TcpStream) -> io::Result<()> {
        self.faults.resets.fetch_add(1, SeqCst);
        Ok(())
    }
}

/// Asserts the pool's books balance when nothing is in flight.
pub fn assert_quiet<M: Manager>(pool: &longlink_pool::Pool<M>) {
    let stats = pool.stats();
    assert_eq!(stats.in_use, 0, "{stats:?}");
    assert_eq!(stats.waiting, 0, "{stats:?}");
    assert_eq!(
        stats.open, stats.idle,
        "every open connection is idle: {stats:?}"
    );
}
