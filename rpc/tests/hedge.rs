//! Hedging: a slow idempotent call is sent a second time; the first answer wins and the
//! other attempt is cancelled; never for a call that is not idempotent; within the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use longlink_rpc::{
    Balancer, Client, Hedge, RetryBudget, RetryPolicy, Server, ServerHandle, ServiceError,
};

longlink_rpc::service! {
    /// Profiles.
    pub mod profiles {
        /// A read: safe to send twice.
        #[idempotent]
        fn get(id: u64) -> u64;
        /// A write that is not idempotent.
        fn bump(id: u64) -> u64;
    }
}

/// What each call does, by its number (from 0) on this server.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Answers at once.
    Fast,
    /// Answers after this long.
    After(Duration),
    /// Never answers (until cancelled).
    Hang,
}

struct Profiles {
    pace: Box<dyn Fn(usize) -> Pace + Send + Sync>,
    started: AtomicUsize,
    /// Handlers dropped before they answered (cancelled).
    dropped: Arc<AtomicUsize>,
}

struct Running(Arc<AtomicUsize>, bool);

impl Drop for Running {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, SeqCst);
        }
    }
}

impl Profiles {
    async fn run(&self) -> Result<u64, ServiceError> {
        let n = self.started.fetch_add(1, SeqCst);
        let mut running = Running(Arc::clone(&self.dropped), false);
        match (self.pace)(n) {
            Pace::Fast => {}
            Pace::After(d) => tokio::time::sleep(d).await,
            Pace::Hang => std::future::pending::<()>().await,
        }
        running.1 = true;
        Ok(n as u64)
    }
}

impl profiles::Handler for Profiles {
    async fn get(&self, _id: u64) -> Result<u64, ServiceError> {
        self.run().await
    }
    async fn bump(&self, _id: u64) -> Result<u64, ServiceError> {
        self.run().await
    }
}

async fn server(
    pace: impl Fn(usize) -> Pace + Send + Sync + 'static,
) -> (String, Arc<Profiles>, ServerHandle) {
    let profiles = Arc::new(Profiles {
        pace: Box::new(pace),
        started: AtomicUsize::new(0),
        dropped: Arc::new(AtomicUsize::new(0)),
    });
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let (addr, handle) = (server.local_addr().to_string(), server.handle());
    tokio::spawn(server.serve(profiles::Server::from_arc(Arc::clone(&profiles))));
    (addr, profiles, handle)
}

fn hedging(addr: &str, hedge: Hedge) -> Client {
    Client::builder(addr)
        .retry(RetryPolicy::default().hedge(hedge))
        .build()
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
async fn slow_idempotent_call_is_hedged_first_answer_wins_loser_cancelled() {
    // The first call never answers; the hedge does at once.
    let (addr, profiles, handle) = server(|n| if n == 0 { Pace::Hang } else { Pace::Fast }).await;
    let client = hedging(&addr, Hedge::after(Duration::from_millis(20)));
    let typed = profiles::Client::new(client.clone());
    assert_eq!(typed.get(7).await.unwrap(), 1, "the hedge's answer");
    let stats = client.stats();
    assert_eq!(
        (stats.hedges, stats.hedges_won, stats.retries),
        (1, 1, 0),
        "{stats:?}"
    );
    // The loser was dropped on our side (CANCEL sent), and the server aborted its handler.
    assert_eq!((stats.in_flight, stats.pending), (0, 0), "{stats:?}");
    eventually("the server cancels the slow attempt", || {
        handle.stats().cancelled == 1 && profiles.dropped.load(SeqCst) == 1
    })
    .await;
    assert_eq!(profiles.started.load(SeqCst), 2);
}

#[tokio::test]
async fn non_idempotent_call_is_never_hedged() {
    let (addr, profiles, _) = server(|_| Pace::After(Duration::from_millis(300))).await;
    let client = hedging(&addr, Hedge::after(Duration::from_millis(10)));
    let typed = profiles::Client::new(client.clone());
    assert_eq!(typed.bump(7).await.unwrap(), 0);
    assert_eq!(profiles.started.load(SeqCst), 1, "sent once");
    let stats = client.stats();
    assert_eq!((stats.hedges, stats.hedges_refused), (0, 0), "{stats:?}");
    // The raw API is the same: `call` is not idempotent, `call_idempotent` is.
    let body = bytes::Bytes::from(postcard::to_allocvec(&(7u64,)).unwrap());
    client
        .call(profiles::methods::get, body.clone())
        .await
        .unwrap();
    assert_eq!(
        (profiles.started.load(SeqCst), client.stats().hedges),
        (2, 0)
    );
    client
        .call_idempotent(profiles::methods::get, body)
        .await
        .unwrap();
    assert_eq!(client.stats().hedges, 1);
}

#[tokio::test]
async fn hedge_after_the_p95_waits_for_a_hundred_answers_then_fires() {
    // Calls 0 and 151 take 600 ms; the others answer at once. The 100 ms floor keeps a
    // fast call that a loaded machine makes slow from being hedged.
    let (addr, profiles, _) = server(|n| match n {
        0 | 151 => Pace::After(Duration::from_millis(600)),
        _ => Pace::Fast,
    })
    .await;
    let client = hedging(&addr, Hedge::percentile(95.0, Duration::from_millis(100)));
    let typed = profiles::Client::new(client.clone());
    // A new client knows no latencies: its first slow call is not doubled.
    typed.get(1).await.unwrap();
    assert_eq!(client.stats().hedges, 0);
    for _ in 0..150 {
        typed.get(1).await.unwrap();
    }
    assert_eq!(client.stats().hedges, 0, "fast calls are not hedged");
    // Now the p95 is known (well under 600 ms): the slow call is hedged and the hedge wins.
    assert_eq!(typed.get(1).await.unwrap(), 152);
    let stats = client.stats();
    assert_eq!((stats.hedges, stats.hedges_won), (1, 1), "{stats:?}");
    assert_eq!(profiles.started.load(SeqCst), 153);
}

#[tokio::test]
async fn hedges_spend_the_budget_and_are_refused_when_it_is_empty() {
    let (addr, profiles, _) = server(|_| Pace::After(Duration::from_millis(100))).await;
    let client = Client::builder(&addr)
        .retry(
            RetryPolicy::default()
                .hedge(Hedge::after(Duration::from_millis(5)))
                .budget(RetryBudget::none()),
        )
        .build();
    let typed = profiles::Client::new(client.clone());
    assert_eq!(typed.get(1).await.unwrap(), 0, "the first attempt answers");
    let stats = client.stats();
    assert_eq!((stats.hedges, stats.hedges_refused), (0, 1), "{stats:?}");
    assert_eq!(profiles.started.load(SeqCst), 1);
}

#[tokio::test]
async fn dropped_hedged_call_cancels_both_attempts_and_leaks_nothing() {
    let (addr, profiles, handle) = server(|_| Pace::Hang).await;
    let client = hedging(&addr, Hedge::after(Duration::from_millis(10)));
    let call = {
        let typed = profiles::Client::new(client.clone());
        tokio::spawn(async move { typed.get(1).await })
    };
    eventually("both attempts run", || profiles.started.load(SeqCst) == 2).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let stats = client.stats();
    assert_eq!(
        (
            stats.in_flight,
            stats.in_flight_bytes,
            stats.pending,
            stats.hedges
        ),
        (0, 0, 0, 1),
        "{stats:?}"
    );
    eventually("the server cancels both", || {
        handle.stats().cancelled == 2 && profiles.dropped.load(SeqCst) == 2
    })
    .await;
}

#[tokio::test]
async fn balanced_hedge_goes_to_the_next_instance() {
    let (slow_addr, slow, _) = server(|_| Pace::Hang).await;
    let (fast_addr, fast, _) = server(|_| Pace::Fast).await;
    let balancer = Balancer::from_addrs([slow_addr.clone(), fast_addr], |a| {
        hedging(a, Hedge::after(Duration::from_millis(20)))
    });
    let key = (0u64..)
        .find(|k| balancer.addr_for_key(&k.to_be_bytes()).as_deref() == Some(slow_addr.as_str()))
        .unwrap();
    let typed = profiles::Client::new(balancer.clone()).with_key(key.to_be_bytes());
    assert_eq!(
        typed.get(1).await.unwrap(),
        0,
        "the other instance answered"
    );
    assert_eq!(
        (slow.started.load(SeqCst), fast.started.load(SeqCst)),
        (1, 1)
    );
    // Counted where the hedge went; a hedge is not a failover.
    let counts: Vec<_> = balancer
        .targets()
        .iter()
        .map(|(_, c)| (c.stats().hedges, c.stats().hedges_won))
        .collect();
    assert!(
        counts.contains(&(1, 1)) && counts.contains(&(0, 0)),
        "{counts:?}"
    );
    assert_eq!(balancer.failovers(), 0);
}
