//! Retries: only of calls that provably did not run, or that are idempotent; within the
//! deadline; capped by the budget; counted; leaking nothing when dropped.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::ECHO;
use common::script::{self, Act};
use longlink_rpc::{
    Balancer, Client, Flags, Request, Response, RetryPolicy, RpcError, Server, ServiceError,
    Status, Strategy,
};

/// A server whose handler NACKs (REJECTED, NOT_PROCESSED | RETRYABLE — what the server
/// itself answers over its limits) the first `nacks` requests and echoes the rest.
async fn nacking_server(nacks: usize) -> (String, Arc<AtomicUsize>) {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let service = {
        let seen = Arc::clone(&seen);
        tower::service_fn(move |req: Request| {
            let n = seen.fetch_add(1, SeqCst);
            async move {
                Ok::<_, Infallible>(if n < nacks {
                    Response::error(Status::REJECTED, "busy")
                        .with_flags(Flags::NOT_PROCESSED | Flags::RETRYABLE)
                } else {
                    Response::ok(req.body)
                })
            }
        })
    };
    tokio::spawn(server.serve(service));
    (addr, seen)
}

/// Waits (up to 5 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < give_up, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn nacked_call_is_retried_and_succeeds_counted() {
    let (addr, seen) = nacking_server(1).await;
    let client = Client::new(addr);
    assert_eq!(client.call(ECHO, "again").await.unwrap(), "again");
    assert_eq!(seen.load(SeqCst), 2, "the NACK, then the retry");
    let stats = client.stats();
    assert_eq!((stats.retries, stats.retries_refused), (1, 0), "{stats:?}");
    assert_eq!((stats.in_flight, stats.pending), (0, 0));
}

#[tokio::test]
async fn nacked_call_without_retries_fails_as_not_run() {
    let (addr, seen) = nacking_server(1).await;
    let client = Client::builder(addr).retry(RetryPolicy::never()).build();
    let err = client.call(ECHO, "once").await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Rejected {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!((seen.load(SeqCst), client.stats().retries), (1, 0));
}

#[tokio::test]
async fn goaway_before_dispatch_is_retried_on_a_new_connection() {
    // The server reads the REQ, answers GOAWAY(id − 1) — "I ran nothing from this id" — and
    // closes; the next connection answers.
    let server = script::start(|n| if n == 0 { Act::GoAway } else { Act::Echo }).await;
    let client = Client::new(server.addr());
    assert_eq!(client.call(ECHO, "not run").await.unwrap(), "not run");
    assert_eq!(client.stats().retries, 1);
    assert_eq!((server.requests(), server.connections()), (2, 2));
}

#[tokio::test]
async fn stale_pooled_connection_reset_before_the_write_is_retried() {
    let server = script::start(|_| Act::Echo).await;
    let client = Client::builder(server.addr())
        .strategy(Strategy::Pooled { max_conns: 1 })
        .build();
    assert_eq!(client.call(ECHO, "first").await.unwrap(), "first");
    // The idle pooled connection is reset by the server (RST): the next write on it fails,
    // so the REQ never left — `ConnectionLost { written: false }` — and is sent again on a
    // new connection.
    server.reset_connections();
    tokio::time::sleep(Duration::from_millis(100)).await; // the RST crosses the loopback
    assert_eq!(client.call(ECHO, "second").await.unwrap(), "second");
    assert_eq!(client.stats().retries, 1);
    assert_eq!(
        (server.requests(), server.connections()),
        (2, 2),
        "the failed attempt never reached the server"
    );
}

#[tokio::test]
async fn connection_killed_after_dispatch_is_not_retried_unless_idempotent() {
    // The server reads the REQ (it ran), then hangs up without answering.
    let server = script::start(|n| if n == 0 { Act::Close } else { Act::Echo }).await;
    let client = Client::new(server.addr());
    let err = client.call(ECHO, "charge the card").await.unwrap_err();
    assert!(
        matches!(err, RpcError::ConnectionLost { written: true }) && err.may_have_run(),
        "{err:?}"
    );
    assert_eq!(
        (server.requests(), client.stats().retries),
        (1, 0),
        "ran once"
    );

    let server = script::start(|n| if n == 0 { Act::Close } else { Act::Echo }).await;
    let client = Client::new(server.addr());
    assert_eq!(client.call_idempotent(ECHO, "read").await.unwrap(), "read");
    assert_eq!((server.requests(), client.stats().retries), (2, 1));
}

longlink_rpc::service! {
    /// A ledger.
    pub mod ledger {
        /// Adds to the total: running it twice adds twice.
        fn add(n: u64) -> u64;
        /// The total: a read.
        #[idempotent]
        fn total() -> u64;
    }
}

/// A ledger whose handlers count themselves and then, if `hang`, never finish (the
/// instance dies while they run).
#[derive(Default)]
struct Ledger {
    hang: bool,
    ran: AtomicUsize,
}

impl Ledger {
    async fn run(&self) -> Result<u64, ServiceError> {
        let n = self.ran.fetch_add(1, SeqCst) as u64;
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(n)
    }
}

impl ledger::Handler for Ledger {
    async fn add(&self, _n: u64) -> Result<u64, ServiceError> {
        self.run().await
    }
    async fn total(&self) -> Result<u64, ServiceError> {
        self.run().await
    }
}

async fn ledger_server(
    hang: bool,
) -> (
    String,
    Arc<Ledger>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let ledger = Arc::new(Ledger {
        hang,
        ..Ledger::default()
    });
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();
    let task = tokio::spawn(server.serve(ledger::Server::from_arc(Arc::clone(&ledger))));
    (addr, ledger, task)
}

#[tokio::test]
async fn balanced_typed_call_killed_after_dispatch_moves_on_only_when_idempotent() {
    assert!(ledger::methods::is_idempotent(ledger::methods::total));
    assert!(!ledger::methods::is_idempotent(ledger::methods::add));
    for idempotent in [false, true] {
        // The instance that owns the key runs the handler, then dies; the other answers.
        let (dying_addr, dying, dying_task) = ledger_server(true).await;
        let (alive_addr, alive, _alive_task) = ledger_server(false).await;
        let balancer = Balancer::from_addrs([dying_addr.clone(), alive_addr], |a| Client::new(a));
        let key = (0u64..)
            .find(|k| {
                balancer.addr_for_key(&k.to_be_bytes()).as_deref() == Some(dying_addr.as_str())
            })
            .unwrap();
        let client = ledger::Client::new(balancer.clone()).with_key(key.to_be_bytes());
        let call = tokio::spawn(async move {
            if idempotent {
                client.total().await
            } else {
                client.add(5).await
            }
        });
        eventually("the handler runs", || dying.ran.load(SeqCst) == 1).await;
        dying_task.abort(); // the instance dies, its connections with it
        let result = call.await.unwrap();
        if idempotent {
            assert_eq!(result.unwrap(), 0, "answered by the other instance");
            assert_eq!((alive.ran.load(SeqCst), balancer.failovers()), (1, 1));
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, RpcError::ConnectionLost { written: true }),
                "{err:?}"
            );
            assert_eq!(
                (alive.ran.load(SeqCst), balancer.failovers()),
                (0, 0),
                "never sent twice"
            );
        }
    }
}

#[tokio::test]
async fn budget_caps_retries_under_a_target_that_always_nacks() {
    let (addr, seen) = nacking_server(usize::MAX).await;
    let client = Client::new(addr); // the default budget: 10% + 10 per second over 10 s
    let started = Instant::now();
    let calls = 1_000;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..calls / 8 {
                    let err = client.call(ECHO, "x").await.unwrap_err();
                    assert!(matches!(err, RpcError::Rejected { .. }), "{err:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = client.stats();
    // Calls and retries count for 9–10 s: a slower run gets a second window's floor.
    let windows = 1 + started.elapsed().as_secs() / 9;
    let allowed = calls as u64 / 10 + 100 * windows;
    assert!(
        stats.retries <= allowed,
        "{} retries, {allowed} allowed",
        stats.retries
    );
    assert!(stats.retries >= 100, "the floor is spent: {stats:?}");
    // A call that was not refused made its two retries (3 attempts).
    assert!(
        stats.retries_refused >= calls as u64 - stats.retries / 2,
        "{stats:?}"
    );
    assert_eq!(
        seen.load(SeqCst) as u64,
        calls as u64 + stats.retries,
        "every attempt counted"
    );
    assert_eq!((stats.in_flight, stats.pending), (0, 0));
}

#[tokio::test]
async fn retry_never_waits_past_the_deadline() {
    let (addr, seen) = nacking_server(usize::MAX).await;
    let client = Client::builder(addr)
        .retry(
            RetryPolicy::default().backoff(Duration::from_millis(400), Duration::from_millis(400)),
        )
        .build();
    // The pause (200–400 ms) would end past the 100 ms deadline: the NACK is the answer.
    let err = client
        .call_timeout(ECHO, "hurry", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Rejected { .. }), "{err:?}");
    assert_eq!((seen.load(SeqCst), client.stats().retries), (1, 0));
}

#[tokio::test]
async fn single_target_that_is_down_fails_fast_without_retry() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let client = Client::new(addr);
    for _ in 0..3 {
        let err = client.call(ECHO, "x").await.unwrap_err();
        assert!(matches!(err, RpcError::Unavailable { .. }), "{err:?}");
    }
    // Its reconnect backoff would refuse a retry the same way: none is made.
    assert_eq!(client.stats().retries, 0);
}

#[tokio::test]
async fn dropped_call_waiting_out_its_backoff_leaks_nothing() {
    let (addr, seen) = nacking_server(usize::MAX).await;
    let client = Client::builder(addr)
        .retry(RetryPolicy::default().backoff(Duration::from_secs(30), Duration::from_secs(30)))
        .build();
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.call(ECHO, "patience").await })
    };
    eventually("the first attempt is NACKed and a retry is due", || {
        client.stats().retries == 1
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let stats = client.stats();
    assert_eq!(
        (
            stats.in_flight,
            stats.in_flight_bytes,
            stats.queued,
            stats.pending
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(seen.load(SeqCst), 1, "the retry was never sent");
}
