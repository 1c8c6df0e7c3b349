//! A scripted server: a real listener and the real handshake, then for each REQ whatever
//! the test says — answer, NACK, GOAWAY, hang up — so a test can make a server fail in one
//! exact way and know what it did.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use longlink_codec::rpc::{Flags, Hello, Message, Response, RpcCodec, Status};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::codec::Framed;

/// What the server does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Answers OK with the request's body.
    Echo,
    /// Answers REJECTED with NOT_PROCESSED | RETRYABLE, as a server over its limits does.
    Nack,
    /// Sends GOAWAY(last_id = this id − 1) and closes: it will run nothing from this id on.
    GoAway,
    /// Hangs up without answering (the request was read: it may have run).
    Close,
    /// Never answers.
    Hold,
}

/// What the scripted server saw.
#[derive(Debug, Default)]
pub struct Script {
    pub addr: Option<SocketAddr>,
    /// Requests read (and given to the script).
    pub requests: AtomicUsize,
    pub connections: AtomicUsize,
    pub cancels: AtomicUsize,
    /// Wakes every connection to reset it (RST, not FIN).
    reset: Notify,
}

impl Script {
    pub fn addr(&self) -> String {
        self.addr.expect("bound").to_string()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }

    pub fn cancels(&self) -> usize {
        self.cancels.load(SeqCst)
    }

    /// Resets every open connection that is waiting for a frame (all idle ones).
    pub fn reset_connections(&self) {
        self.reset.notify_waiters();
    }
}

/// Starts a server that does `act(n)` with its `n`-th request (from 0, over all
/// connections).
pub async fn start(act: impl Fn(usize) -> Act + Send + Sync + 'static) -> Arc<Script> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let script = Arc::new(Script {
        addr: Some(listener.local_addr().unwrap()),
        ..Script::default()
    });
    let act: Arc<dyn Fn(usize) -> Act + Send + Sync> = Arc::new(act);
    {
        let script = Arc::clone(&script);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                script.connections.fetch_add(1, SeqCst);
                tokio::spawn(serve(stream, Arc::clone(&script), Arc::clone(&act)));
            }
        });
    }
    script
}

async fn serve(
    stream: TcpStream,
    script: Arc<Script>,
    act: Arc<dyn Fn(usize) -> Act + Send + Sync>,
) {
    let mut framed = Framed::new(stream, RpcCodec::new());
    match framed.next().await {
        Some(Ok(Message::Hello(_))) => {}
        _ => return,
    }
    let ack = Message::HelloAck(Hello {
        max_frame_bytes: 1 << 20,
        max_in_flight: 0,
        features: Default::default(),
    });
    if framed.send(ack).await.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = framed.next() => frame,
            () = script.reset.notified() => {
                let _ = framed.get_ref().set_zero_linger();
                return; // dropped with SO_LINGER 0: an RST
            }
        };
        let reply = match frame {
            Some(Ok(Message::Request(req))) => {
                let n = script.requests.fetch_add(1, SeqCst);
                match act(n) {
                    Act::Echo => Message::Response(Response {
                        id: req.id,
                        status: Status::OK,
                        flags: Flags::NONE,
                        body: req.body,
                    }),
                    Act::Nack => Message::Response(Response {
                        id: req.id,
                        status: Status::REJECTED,
                        flags: Flags::NOT_PROCESSED | Flags::RETRYABLE,
                        body: Bytes::from_static(b"over the limit"),
                    }),
                    Act::GoAway => {
                        let _ = framed
                            .send(Message::GoAway {
                                last_id: req.id - 1,
                            })
                            .await;
                        return;
                    }
                    Act::Close => return,
                    Act::Hold => continue,
                }
            }
            Some(Ok(Message::Cancel { .. })) => {
                script.cancels.fetch_add(1, SeqCst);
                continue;
            }
            Some(Ok(Message::Ping { id })) => Message::Pong { id },
            Some(Ok(_)) => continue,
            _ => return,
        };
        if framed.send(reply).await.is_err() {
            return;
        }
    }
}
