//! The message store on SQLite and on the real MariaDB.

use bytes::Bytes;
use longlink_codec::push::DeliveryMode;
use longlink_pool::db::Db;
use longlink_push::model::{DeliveryStatus, Message, now_ms};
use longlink_push::saver::{Recipient, Saver, SqlSaver};

fn message(id: u64, ttl_ms: i64) -> Message {
    let now = now_ms();
    Message {
        id,
        app: "im".into(),
        mode: DeliveryMode::AtLeastOnce,
        body: Bytes::from(format!("body {id}")),
        created_ms: now,
        expires_ms: (now as i64 + ttl_ms) as u64,
    }
}

fn to(uid: &str, device: &str) -> Recipient {
    Recipient {
        uid: uid.into(),
        device: device.into(),
    }
}

async fn lifecycle(saver: SqlSaver) {
    let now = now_ms();
    saver
        .store(message(1, 60_000), vec![to("u1", "*"), to("u2", "*")], None)
        .await
        .unwrap();
    saver
        .store(message(2, 60_000), vec![to("u1", "phone")], None)
        .await
        .unwrap();
    saver
        .store(message(3, -60_000), vec![to("u1", "*")], None)
        .await
        .unwrap(); // TTL already passed

    let pending = saver
        .pending("u1".into(), "phone".into(), now, 10)
        .await
        .unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|p| (p.message.id, p.attempts))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 0)]
    );
    assert_eq!(pending[0].message.body, Bytes::from("body 1"));
    // Device-specific messages wait for that device only.
    assert_eq!(
        saver
            .pending("u1".into(), "laptop".into(), now, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    saver
        .delivered(1, vec!["u1".into(), "u2".into()], 5)
        .await
        .unwrap();
    saver.delivered(1, vec!["u1".into()], 5).await.unwrap();
    assert_eq!(
        saver
            .pending("u1".into(), "phone".into(), now, 10)
            .await
            .unwrap()[0]
            .attempts,
        2,
        "redeliveries are counted"
    );

    assert_eq!(saver.ack("u1".into(), vec![1, 2]).await.unwrap(), 2);
    assert!(
        saver
            .pending("u1".into(), "phone".into(), now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        saver.ack("u1".into(), vec![1]).await.unwrap(),
        0,
        "acking twice changes nothing"
    );

    let status = saver.status(1).await.unwrap().unwrap();
    let states: Vec<_> = status
        .recipients
        .iter()
        .map(|r| (r.uid.as_str(), r.status, r.attempts))
        .collect();
    assert_eq!(
        states,
        vec![
            ("u1", DeliveryStatus::Acked, 2),
            ("u2", DeliveryStatus::Delivered, 1)
        ]
    );
    assert_eq!(
        saver.status(3).await.unwrap().unwrap().recipients[0].status,
        DeliveryStatus::Expired
    );
    assert_eq!(saver.sweep(now_ms()).await.unwrap(), 1);
    assert!(saver.status(99).await.unwrap().is_none());

    saver.expire(1, "u2".into()).await.unwrap();
    assert!(
        saver
            .pending("u2".into(), "x".into(), now, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(saver.message_for(1, "u2".into()).await.unwrap().is_some());
    assert!(
        saver
            .message_for(1, "stranger".into())
            .await
            .unwrap()
            .is_none(),
        "only recipients may pull a body"
    );
    assert_eq!(saver.max_id().await.unwrap(), 3);

    // Many recipients are stored in chunks, atomically with the body.
    let many: Vec<Recipient> = (0..1_000).map(|i| to(&format!("m{i}"), "*")).collect();
    saver.store(message(4, 60_000), many, None).await.unwrap();
    assert_eq!(
        saver.status(4).await.unwrap().unwrap().recipients.len(),
        1_000
    );
    // A duplicate id is refused as a whole: nothing half-stored.
    assert!(
        saver
            .store(message(4, 60_000), vec![to("late", "*")], None)
            .await
            .is_err()
    );
    assert!(
        saver
            .pending("late".into(), "x".into(), now, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The last send the client is trusted with gives the row up as it is recorded; an ACK
    // that still comes turns it acked.
    saver
        .store(message(20, 60_000), vec![to("z", "*")], None)
        .await
        .unwrap();
    let state = async |id| saver.status(id).await.unwrap().unwrap().recipients[0].status;
    saver.delivered(20, vec!["z".into()], 2).await.unwrap();
    assert_eq!(state(20).await, DeliveryStatus::Delivered);
    saver.delivered(20, vec!["z".into()], 2).await.unwrap();
    assert_eq!(state(20).await, DeliveryStatus::Expired);
    assert!(
        saver
            .pending("z".into(), "x".into(), now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(saver.ack("z".into(), vec![20]).await.unwrap(), 1);
    assert_eq!(state(20).await, DeliveryStatus::Acked);
}

#[tokio::test]
async fn sqlite_store_then_send_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite://{}/push.db", dir.path().display())).unwrap();
    lifecycle(SqlSaver::open(db).await.unwrap()).await;
}

#[tokio::test]
async fn mariadb_store_then_send_lifecycle() {
    let base = std::env::var("LONGLINK_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let admin = Db::open(&base).unwrap();
    let name = format!("push_saver_{}_{}", std::process::id(), now_ms());
    admin
        .exec(&format!("CREATE DATABASE {name}"), ())
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let db = Db::open(&format!("{prefix}/{name}")).unwrap();
    lifecycle(SqlSaver::open(db).await.unwrap()).await;
    admin
        .exec(&format!("DROP DATABASE {name}"), ())
        .await
        .unwrap();
}

#[tokio::test]
async fn stored_messages_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/push.db", dir.path().display());
    {
        let saver = SqlSaver::open(Db::open(&url).unwrap()).await.unwrap();
        saver
            .store(message(7, 60_000), vec![to("u1", "*")], None)
            .await
            .unwrap();
        saver.db().close();
        saver.db().wait_closed().await;
    }
    let saver = SqlSaver::open(Db::open(&url).unwrap()).await.unwrap();
    assert_eq!(
        saver
            .pending("u1".into(), "d".into(), now_ms(), 10)
            .await
            .unwrap()[0]
            .message
            .id,
        7
    );
}

async fn idempotency(saver: SqlSaver) {
    let key = Some("order-42".to_owned());
    assert_eq!(
        saver
            .store(message(10, 60_000), vec![to("u1", "*")], key.clone())
            .await
            .unwrap(),
        None
    );
    // The same key again (a retry with a new id): nothing stored, the first push answered.
    let again = saver
        .store(
            message(11, 60_000),
            vec![to("u1", "*"), to("u2", "*")],
            key.clone(),
        )
        .await
        .unwrap()
        .expect("the first push");
    assert_eq!((again.id, again.recipients, again.stored), (10, 1, true));
    assert!(
        saver.status(11).await.unwrap().is_none(),
        "nothing half-stored"
    );
    // A push that stores nothing keeps its key too.
    let id = 12;
    assert_eq!(
        saver
            .claim("im".into(), "typing-1".into(), id, 3, now_ms() + 60_000)
            .await
            .unwrap(),
        None
    );
    let first = saver
        .claim("im".into(), "typing-1".into(), 13, 3, now_ms() + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.stored), (12, false));
    // Keys are per app.
    assert_eq!(
        saver
            .claim("other".into(), "typing-1".into(), 14, 1, now_ms() + 60_000)
            .await
            .unwrap(),
        None
    );
    // They live as long as their message: the sweep forgets expired ones.
    saver
        .claim("im".into(), "old".into(), 15, 1, now_ms().saturating_sub(1))
        .await
        .unwrap();
    saver.sweep(now_ms()).await.unwrap();
    assert_eq!(
        saver
            .claim("im".into(), "old".into(), 16, 1, now_ms() + 60_000)
            .await
            .unwrap(),
        None,
        "an expired key is free again"
    );
}

#[tokio::test]
async fn sqlite_idempotency_key_stores_once_and_answers_the_first_push() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite://{}/push.db", dir.path().display())).unwrap();
    idempotency(SqlSaver::open(db).await.unwrap()).await;
}

#[tokio::test]
async fn mariadb_idempotency_key_stores_once_and_answers_the_first_push() {
    let base = std::env::var("LONGLINK_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let admin = Db::open(&base).unwrap();
    let name = format!("push_idem_{}_{}", std::process::id(), now_ms());
    admin
        .exec(&format!("CREATE DATABASE {name}"), ())
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let db = Db::open(&format!("{prefix}/{name}")).unwrap();
    idempotency(SqlSaver::open(db).await.unwrap()).await;
    admin
        .exec(&format!("DROP DATABASE {name}"), ())
        .await
        .unwrap();
}
