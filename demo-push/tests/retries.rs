//! A stored message that could not be handed to an online user's room is tried again while
//! the user stays connected: the push answers at once, and the message arrives when the
//! room answers again — without the user reconnecting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use longlink_codec::push::{DeliveryMode, PushMessage};
use longlink_pool::db::Db;
use longlink_push::PushError;
use longlink_push::frame::Frame;
use longlink_push::metrics::Metrics;
use longlink_push::model::{IdGenerator, Target};
use longlink_push::pusher::{PushConfig, Pusher};
use longlink_push::register::{MemoryRegister, Register};
use longlink_push::rooms::{Directory, Fanout, Gateway, Local, Reached, RoomInfo, RoomLoad};
use longlink_push::saver::{Saver, SqlSaver};
use parking_lot::Mutex;

/// A room whose first `fail` deliveries fail (its RPC broke), then takes them.
#[derive(Debug, Default)]
struct Flaky {
    fail: AtomicUsize,
    calls: AtomicUsize,
    delivered: Mutex<Vec<(String, Frame)>>,
}

#[async_trait::async_trait]
impl Gateway for Flaky {
    async fn deliver(
        &self,
        _app: String,
        frame: Frame,
        uids: Vec<String>,
        _device: Option<String>,
    ) -> Result<Reached, PushError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            return Err(PushError::unavailable("room", "connection refused"));
        }
        let mut delivered = self.delivered.lock();
        for uid in &uids {
            delivered.push((uid.clone(), frame.clone()));
        }
        Ok(Reached {
            deliveries: uids.len() as u64,
            busiest_room: uids.len() as u64,
            users: uids,
            unreached: Vec::new(),
        })
    }
    async fn broadcast(&self, _: String, _: Frame, _: bool) -> Result<Reached, PushError> {
        Ok(Reached::default())
    }
    async fn users_in(&self, _: String) -> Result<Vec<String>, PushError> {
        Ok(Vec::new())
    }
    async fn kick(&self, _: String, _: String, _: String) -> Result<u64, PushError> {
        Ok(0)
    }
    async fn drain(&self, _: u64) -> Result<(), PushError> {
        Ok(())
    }
    async fn load(&self) -> Result<RoomLoad, PushError> {
        Ok(RoomLoad {
            name: "room-1".into(),
            connections: 1,
            draining: false,
        })
    }
}

#[tokio::test]
async fn a_delivery_that_failed_for_an_online_user_is_tried_again_and_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite://{}/push.db", dir.path().display())).unwrap();
    let saver: Arc<dyn Saver> = Arc::new(SqlSaver::open(db).await.unwrap());
    let register: Arc<dyn Register> = Arc::new(MemoryRegister::default());
    let room = Arc::new(Flaky {
        fail: AtomicUsize::new(2),
        ..Flaky::default()
    });
    let directory: Arc<dyn Directory> = Arc::new(Local::new(
        RoomInfo::local("room-1", "ws://127.0.0.1:1/", "127.0.0.1:1"),
        Arc::clone(&room) as Arc<dyn Gateway>,
    ));
    let metrics = Arc::new(Metrics::default());
    let pusher = Pusher::new(
        Arc::clone(&register),
        Arc::clone(&saver),
        Fanout::new(directory, register, Arc::clone(&metrics)),
        Arc::new(IdGenerator::starting_after(0)),
        PushConfig::default(),
        Arc::clone(&metrics),
    );
    let target = Target::Unicast {
        uid: "u1".into(),
        device: None,
    };
    let report = pusher
        .push(
            "demo",
            target,
            DeliveryMode::AtLeastOnce,
            "hi".into(),
            None,
            None,
        )
        .await
        .unwrap();
    // Stored and accepted, not yet delivered: the room did not answer.
    assert!(report.stored);
    assert_eq!(report.delivered, 0);
    // Tried again (after 250 ms, then 500 ms) until the room takes it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while room.delivered.lock().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (uid, frame) = room.delivered.lock()[0].clone();
    assert_eq!(uid, "u1");
    assert_eq!(room.calls.load(Ordering::SeqCst), 3);
    // The frame is the push's, built once.
    let decoded = PushMessage::from_frame(
        &tokio_util::codec::Decoder::decode(
            &mut longlink_codec::push::PushCodec::new(),
            &mut bytes::BytesMut::from(&frame.binary()[..]),
        )
        .unwrap()
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(decoded, PushMessage::Message(m) if m.id == report.id));
    // The delivery is recorded like a live one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = saver.status(report.id).await.unwrap().unwrap();
        if status.recipients[0].attempts == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.retry_delivered.get() >= 1);
}
