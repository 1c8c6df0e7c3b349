//! One unicast load run against a running system.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use longlink_push::token::Tokens;
use longlink_push_client::{Client, ClientConfig, Event};
use serde::Serialize;

/// The load.
#[derive(Debug, Clone)]
pub struct Load {
    /// Connected users (pushes go to them round-robin).
    pub users: usize,
    /// Pushes in flight at once.
    pub concurrency: usize,
    /// Measured time, after a one-second warm-up.
    pub duration: Duration,
    /// `at_most_once` (center → register → room only) or `at_least_once` (stored first).
    pub delivery: String,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Pushes the API accepted per second.
    pub pushes_per_sec: f64,
    /// Messages clients received per second.
    pub received_per_sec: f64,
    /// API call to client receipt, median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Pushes refused (non-200) or failed.
    pub errors: u64,
    /// Accepted pushes never received within two seconds of the end.
    pub missing: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Connects the users (through `centers[0]`), pushes for the load's duration — the pushes
/// in flight spread evenly over `centers` — and measures.
pub async fn run(
    centers: &[String],
    key: &str,
    secret: &str,
    load: &Load,
) -> Result<Outcome, String> {
    let center = centers.first().ok_or("no center")?.as_str();
    let tokens = Tokens::new(secret.as_bytes());
    let measuring = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let received_all = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(parking_lot::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let mut clients = Vec::new();
    for i in 0..load.users {
        let uid = format!("bench{i}");
        let mut config =
            ClientConfig::new(center, &uid, &tokens.issue(&uid, Duration::from_secs(3600)));
        config.backoff_min = Duration::from_millis(50);
        let mut client = Client::start(config);
        match tokio::time::timeout(Duration::from_secs(10), client.next_event()).await {
            Ok(Some(Event::Connected { .. })) => {}
            other => return Err(format!("{uid} did not connect: {other:?}")),
        }
        let (measuring, received, received_all, histogram) = (
            Arc::clone(&measuring),
            Arc::clone(&received),
            Arc::clone(&received_all),
            Arc::clone(&histogram),
        );
        clients.push(tokio::spawn(async move {
            while let Some(event) = client.next_event().await {
                if let Event::Message(m) = event {
                    received_all.fetch_add(1, Ordering::Relaxed);
                    let sent: Option<u64> = m.body.as_str().and_then(|s| s.parse().ok());
                    if let (Some(sent), true) = (sent, measuring.load(Ordering::Relaxed)) {
                        received.fetch_add(1, Ordering::Relaxed);
                        let _ = histogram
                            .lock()
                            .record(now_us().saturating_sub(sent).max(1));
                    }
                }
            }
        }));
    }
    let http: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(load.concurrency)
        .build_http();
    let accepted = Arc::new(AtomicU64::new(0));
    let accepted_all = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut pushers = Vec::new();
    for j in 0..load.concurrency {
        let (http, accepted, accepted_all, errors, stop, next, measuring) = (
            http.clone(),
            Arc::clone(&accepted),
            Arc::clone(&accepted_all),
            Arc::clone(&errors),
            Arc::clone(&stop),
            Arc::clone(&next),
            Arc::clone(&measuring),
        );
        let (url, key, users, delivery) = (
            format!("{}/push/unicast", centers[j % centers.len()]),
            key.to_owned(),
            load.users as u64,
            load.delivery.clone(),
        );
        pushers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let uid = format!("bench{}", next.fetch_add(1, Ordering::Relaxed) % users);
                let body =
                    serde_json::json!({"uid": uid, "body": now_us().to_string(), "mode": delivery});
                let req = http::Request::post(&url)
                    .header("x-api-key", &key)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("a request");
                match http.request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.into_body().collect().await;
                        accepted_all.fetch_add(1, Ordering::Relaxed);
                        if measuring.load(Ordering::Relaxed) {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(resp) => {
                        let _ = resp.into_body().collect().await;
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    tokio::time::sleep(load.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        let _ = p.await;
    }
    // Let the last messages arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while received_all.load(Ordering::Relaxed) < accepted_all.load(Ordering::Relaxed)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in clients {
        c.abort();
    }
    let h = histogram.lock();
    Ok(Outcome {
        pushes_per_sec: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        received_per_sec: received.load(Ordering::Relaxed) as f64 / elapsed,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        errors: errors.load(Ordering::Relaxed),
        missing: accepted_all
            .load(Ordering::Relaxed)
            .saturating_sub(received_all.load(Ordering::Relaxed)),
    })
}
