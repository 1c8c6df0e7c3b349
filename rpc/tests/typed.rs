//! Typed services and load balancing over real servers.

mod common;

use std::collections::HashMap;

use common::{ECHO, TestServer};
use longlink_rpc::{Balancer, Client, RpcError, Server, ServiceError};

longlink_rpc::service! {
    /// A key-value store, for the test.
    pub mod kv {
        /// Stores a pair; answers the previous value.
        fn put((String, String)) -> Option<String>;
        /// Reads a value.
        fn get(String) -> Option<String>;
    }
}

#[derive(Default)]
struct Store(parking_lot::Mutex<HashMap<String, String>>);

impl kv::Handler for Store {
    async fn put(&self, (k, v): (String, String)) -> Result<Option<String>, ServiceError> {
        if k.is_empty() {
            return Err(ServiceError::new(1400, "empty key"));
        }
        Ok(self.0.lock().insert(k, v))
    }
    async fn get(&self, k: String) -> Result<Option<String>, ServiceError> {
        Ok(self.0.lock().get(&k).cloned())
    }
}

#[tokio::test]
async fn typed_calls_round_trip_and_report_handler_errors() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(kv::Server::new(Store::default())));
    let client = kv::Client::new(Client::new(addr.to_string()));
    assert_eq!(client.put(("a".into(), "1".into())).await.unwrap(), None);
    assert_eq!(
        client.put(("a".into(), "2".into())).await.unwrap(),
        Some("1".into())
    );
    assert_eq!(client.get("a".into()).await.unwrap(), Some("2".into()));
    let err = client.put((String::new(), "x".into())).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote { status: 1400, message } if message == "empty key"),
        "{err:?}"
    );
    // A body that is not the method's request type is refused as a bad request.
    let err = client
        .inner()
        .call(kv::methods::put, "garbage")
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Remote { status: 5, .. }), "{err:?}");
    assert_ne!(kv::methods::put, kv::methods::get);
}

#[tokio::test]
async fn balancer_routes_a_key_to_one_instance_and_spreads_the_rest() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let balancer =
        Balancer::new([&a, &b].map(|s| (s.addr.to_string(), Client::new(s.addr.to_string()))));
    for _ in 0..20 {
        balancer.call_by_key(b"user:7", ECHO, "x").await.unwrap();
    }
    let (on_a, on_b) = (
        a.seen.finished.load(std::sync::atomic::Ordering::SeqCst),
        b.seen.finished.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(
        on_a == 20 && on_b == 0 || on_a == 0 && on_b == 20,
        "a key stays on one instance: {on_a}/{on_b}"
    );
    for _ in 0..200 {
        balancer.call(ECHO, "y").await.unwrap();
    }
    let (on_a2, on_b2) = (
        a.seen.finished.load(std::sync::atomic::Ordering::SeqCst) - on_a,
        b.seen.finished.load(std::sync::atomic::Ordering::SeqCst) - on_b,
    );
    assert_eq!(on_a2 + on_b2, 200);
    assert!(on_a2 > 0 && on_b2 > 0, "p2c uses both: {on_a2}/{on_b2}");
}
