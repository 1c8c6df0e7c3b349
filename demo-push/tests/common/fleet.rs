//! Clients that record what they receive (ACKing it), and the counting the fault tests
//! share: what was sent, what arrived, what was ACKed.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use longlink_push_client::{Client, Event};
use parking_lot::Mutex;
use serde_json::Value;

use super::cluster::TestCluster;
use super::{Harness, KEY, WAIT, event};

/// Clients that record what they receive (ACKing it) and where they are connected.
pub struct Fleet {
    pub received: Arc<Mutex<HashMap<String, BTreeSet<u64>>>>,
    pub rooms: Arc<Mutex<HashMap<String, String>>>,
    /// Connections made after the first, by all the clients.
    pub reconnects: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    pub async fn connect(s: &TestCluster, uids: &[String]) -> Fleet {
        Fleet::connect_with(s, uids, |_| {}).await
    }

    /// As [`connect`](Self::connect), each client's configuration changed by `tweak`.
    pub async fn connect_with(
        s: &TestCluster,
        uids: &[String],
        tweak: impl Fn(&mut longlink_push_client::ClientConfig),
    ) -> Fleet {
        let received: Arc<Mutex<HashMap<String, BTreeSet<u64>>>> = Arc::default();
        let rooms: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let reconnects: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let mut tasks = Vec::new();
        for uid in uids {
            let mut client: Client = s.client_with(uid, &tweak);
            connected_to(&mut client, &rooms, uid).await;
            let (received, rooms, uid, reconnects) = (
                Arc::clone(&received),
                Arc::clone(&rooms),
                uid.clone(),
                Arc::clone(&reconnects),
            );
            tasks.push(tokio::spawn(async move {
                while let Some(event) = client.next_event().await {
                    match event {
                        Event::Message(m) => {
                            received.lock().entry(uid.clone()).or_default().insert(m.id);
                        }
                        Event::Connected { room, .. } => {
                            reconnects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            rooms.lock().insert(uid.clone(), room);
                        }
                        _ => {}
                    }
                }
            }));
        }
        Fleet {
            received,
            rooms,
            reconnects,
            tasks,
        }
    }

    pub fn rooms(&self) -> HashMap<String, String> {
        self.rooms.lock().clone()
    }

    /// What of `sent` has not arrived after waiting up to `within`.
    pub async fn missing_after(
        &self,
        sent: &HashMap<String, Vec<u64>>,
        within: Duration,
    ) -> Vec<(String, u64)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let missing: Vec<(String, u64)> = {
                let received = self.received.lock();
                sent.iter()
                    .flat_map(|(uid, ids)| {
                        ids.iter()
                            .filter(|id| !received.get(uid).is_some_and(|r| r.contains(id)))
                            .map(move |id| (uid.clone(), *id))
                    })
                    .collect()
            };
            if missing.is_empty() || tokio::time::Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every user has every message it was sent.
    pub async fn wait_all(&self, sent: &HashMap<String, Vec<u64>>, within: Duration) {
        let missing = self.missing_after(sent, within).await;
        assert!(
            missing.is_empty(),
            "{} messages never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn connected_to(client: &mut Client, rooms: &Mutex<HashMap<String, String>>, uid: &str) {
    match event(client).await {
        Event::Connected { room, .. } => {
            rooms.lock().insert(uid.to_owned(), room);
        }
        other => panic!("expected Connected, got {other:?}"),
    }
}

pub fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}")).collect()
}

pub async fn raw_post(url: &str, body: &str) -> Option<(u16, Value)> {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(url)
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(WAIT, client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

pub async fn wait_acked(s: &TestCluster, sent: &HashMap<String, Vec<u64>>) {
    for (uid, ids) in sent {
        for id in ids {
            s.wait_status(*id, uid, "acked").await;
        }
    }
}

/// Of `sent`, what is not acknowledged after waiting up to `within` in all.
pub async fn unacked_after(
    s: &TestCluster,
    sent: &HashMap<String, Vec<u64>>,
    within: Duration,
) -> Vec<(String, u64)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut unacked = Vec::new();
    for (uid, ids) in sent {
        for &id in ids {
            loop {
                let (_, answer) = s.get(&format!("/messages/{id}"), KEY).await;
                let acked = answer["recipients"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["uid"] == *uid && r["status"] == "acked"));
                if acked {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    unacked.push((uid.clone(), id));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    unacked
}
