//! A TCP proxy in front of a real server (Redis, MariaDB) that a test can cut: while it is
//! down, open connections are closed and new ones are refused, as if the server stopped;
//! brought up, it forwards again. The server itself, shared by the whole machine, is left
//! alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy on 127.0.0.1 (an ephemeral port) forwarding to `target`.
    pub async fn start(target: &str) -> Proxy {
        Proxy::start_on("127.0.0.1:0", target).await
    }

    /// A proxy listening on `local` (`ip:port`, port 0 for any) forwarding to `target`.
    pub async fn start_on(local: &str, target: &str) -> Proxy {
        let listener = TcpListener::bind(local).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let target = target.to_owned();
        let accept = {
            let (down, conns) = (Arc::clone(&down), Arc::clone(&conns));
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut conns = conns.lock();
                    conns.retain(|c| !c.is_finished());
                    conns.push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Proxy {
            addr,
            down,
            conns,
            accept,
        }
    }

    /// Cuts every connection (returning once they are closed) and refuses new ones.
    pub async fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        let cut: Vec<AbortHandle> = self.conns.lock().drain(..).collect();
        for c in &cut {
            c.abort();
        }
        while !cut.iter().all(AbortHandle::is_finished) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The server is "down" only if a new connection is closed at once.
        let mut probe = TcpStream::connect(self.addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut probe, &mut byte),
        )
        .await
        .expect("the cut proxy closes new connections at once");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the cut proxy still forwards"
        );
    }

    /// Forwards again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }
}
