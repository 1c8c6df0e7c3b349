//! A connection held past the leak threshold is reported with the caller's location.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeServer, TcpManager};
use longlink_pool::Pool;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn connection_held_past_the_threshold_is_reported_once_with_its_location() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .leak_threshold(Some(Duration::from_millis(50)))
        .reap_interval(Duration::from_millis(20))
        .build(TcpManager::new(&server));
    let conn = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(pool.stats().leaks, 1, "reported while still held");
    drop(conn);
    assert_eq!(pool.stats().leaks, 1, "not reported twice");
    let quick = pool.acquire().await.unwrap();
    drop(quick);
    assert_eq!(pool.stats().leaks, 1);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("leak threshold"), "{text}");
    assert!(
        text.contains("tests/leak.rs"),
        "the caller's location is named: {text}"
    );
}
