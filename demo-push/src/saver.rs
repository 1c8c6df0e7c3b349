//! Store-then-send: every at-least-once (and notify) message is stored before it is sent,
//! marked delivered when sent, acknowledged by the client, redelivered on reconnect until
//! acknowledged, and given up (expired) after its TTL or too many unacknowledged sends.
//! SQLite through `longlink-pool` here; the cluster mode uses MySQL with the same SQL.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use longlink_pool::db::{Db, DbError, Driver, Row, Value};
use serde::{Deserialize, Serialize};

use crate::PushError;
use crate::model::{DeliveryStatus, Message, mode_code, mode_from_code};

/// A recipient row: a user, and a device or `"*"` for any of the user's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The user.
    pub uid: String,
    /// A device, or `"*"`.
    pub device: String,
}

/// A stored message still owed to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The message.
    pub message: Message,
    /// Times it was sent to this user so far.
    pub attempts: u32,
}

/// One recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    /// The user.
    pub uid: String,
    /// The device, or `"*"`.
    pub device: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Times sent.
    pub attempts: u32,
    /// Last change (Unix ms).
    pub updated_ms: u64,
}

/// A message and its recipients' states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatus {
    /// The id.
    pub id: u64,
    /// The app.
    pub app: String,
    /// When it was accepted (Unix ms).
    pub created_ms: u64,
    /// When its TTL ends (Unix ms).
    pub expires_ms: u64,
    /// Every recipient.
    pub recipients: Vec<RecipientStatus>,
}

/// What the rest of the system asks of the message store.
#[async_trait]
pub trait Saver: Send + Sync + 'static {
    /// Stores a message (its body once) and one row per recipient, atomically.
    async fn store(&self, message: &Message, recipients: &[Recipient]) -> Result<(), PushError>;
    /// Records that `message_id` was sent to each of `uids` (one more attempt each).
    async fn delivered(&self, message_id: u64, uids: &[String]) -> Result<(), PushError>;
    /// Acknowledges `ids` for `uid`; returns the rows changed.
    async fn ack(&self, uid: &str, ids: &[u64]) -> Result<u64, PushError>;
    /// Gives up on `message_id` for `uid`.
    async fn expire(&self, message_id: u64, uid: &str) -> Result<(), PushError>;
    /// The messages still owed to `uid` on `device`, oldest first, at most `limit`.
    async fn pending(
        &self,
        uid: &str,
        device: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Pending>, PushError>;
    /// A message and its recipients' states.
    async fn status(&self, message_id: u64) -> Result<Option<MessageStatus>, PushError>;
    /// The stored message, if `uid` is one of its recipients (for notify-mode pulls).
    async fn message_for(&self, message_id: u64, uid: &str) -> Result<Option<Message>, PushError>;
    /// Marks every pending row whose message's TTL has passed as expired; returns how many.
    async fn sweep(&self, now_ms: u64) -> Result<u64, PushError>;
    /// The largest id stored (0 if none), so new ids never collide after a restart.
    async fn max_id(&self) -> Result<u64, PushError>;
}

/// The SQL store (SQLite or MySQL/MariaDB).
#[derive(Clone)]
pub struct SqlSaver {
    db: Db,
}

impl fmt::Debug for SqlSaver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSaver").field("db", &self.db).finish()
    }
}

/// Rows per INSERT when storing many recipients.
const INSERT_CHUNK: usize = 200;

fn u64_of(row: &Row, column: &str) -> Result<u64, DbError> {
    let v: i64 = row.get(column)?;
    Ok(v as u64)
}

fn message_of(row: &Row) -> Result<Message, DbError> {
    Ok(Message {
        id: u64_of(row, "id")?,
        app: row.get("app")?,
        mode: mode_from_code(row.get("mode")?),
        body: Bytes::from(row.get::<Vec<u8>>("body")?),
        created_ms: u64_of(row, "created_ms")?,
        expires_ms: u64_of(row, "expires_ms")?,
    })
}

impl SqlSaver {
    /// Opens the store on `db` and creates its tables if missing (the migration).
    pub async fn open(db: Db) -> Result<SqlSaver, PushError> {
        let blob = if db.driver() == Driver::Mysql {
            "MEDIUMBLOB"
        } else {
            "BLOB"
        };
        db.exec(
            &format!(
                "CREATE TABLE IF NOT EXISTS push_messages (
                    id BIGINT PRIMARY KEY, app VARCHAR(64) NOT NULL, mode INTEGER NOT NULL,
                    body {blob} NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL)"
            ),
            (),
        )
        .await?;
        db.exec(
            "CREATE TABLE IF NOT EXISTS push_deliveries (
                message_id BIGINT NOT NULL, uid VARCHAR(128) NOT NULL, device VARCHAR(128) NOT NULL,
                status INTEGER NOT NULL, attempts INTEGER NOT NULL, updated_ms BIGINT NOT NULL,
                PRIMARY KEY (message_id, uid, device))",
            (),
        )
        .await?;
        db.exec(
            "CREATE INDEX IF NOT EXISTS push_deliveries_pending ON push_deliveries (uid, status)",
            (),
        )
        .await?;
        Ok(SqlSaver { db })
    }

    /// The database handle (for its pool's metrics).
    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[async_trait]
impl Saver for SqlSaver {
    async fn store(&self, message: &Message, recipients: &[Recipient]) -> Result<(), PushError> {
        let mut tx = self.db.begin().await?;
        tx.exec(
            "INSERT INTO push_messages (id, app, mode, body, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (
                message.id as i64,
                message.app.as_str(),
                mode_code(message.mode),
                message.body.to_vec(),
                message.created_ms as i64,
                message.expires_ms as i64,
            ),
        )
        .await?;
        for chunk in recipients.chunks(INSERT_CHUNK) {
            let rows = vec!["(?, ?, ?, 0, 0, ?)"; chunk.len()].join(", ");
            let mut values = Vec::with_capacity(chunk.len() * 4);
            for r in chunk {
                values.extend([
                    Value::I64(message.id as i64),
                    Value::Text(r.uid.clone()),
                    Value::Text(r.device.clone()),
                    Value::I64(message.created_ms as i64),
                ]);
            }
            tx.exec(
                &format!("INSERT INTO push_deliveries (message_id, uid, device, status, attempts, updated_ms) VALUES {rows}"),
                values,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delivered(&self, message_id: u64, uids: &[String]) -> Result<(), PushError> {
        for chunk in uids.chunks(INSERT_CHUNK) {
            let mut values = vec![
                Value::I64(crate::model::now_ms() as i64),
                Value::I64(message_id as i64),
            ];
            values.extend(chunk.iter().map(|u| Value::Text(u.clone())));
            self.db
                .exec(
                    &format!(
                        "UPDATE push_deliveries SET status = 1, attempts = attempts + 1, updated_ms = ?
                         WHERE message_id = ? AND status IN (0, 1) AND uid IN ({})",
                        placeholders(chunk.len())
                    ),
                    values,
                )
                .await?;
        }
        Ok(())
    }

    async fn ack(&self, uid: &str, ids: &[u64]) -> Result<u64, PushError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut values = vec![
            Value::I64(crate::model::now_ms() as i64),
            Value::Text(uid.to_owned()),
        ];
        values.extend(ids.iter().map(|id| Value::I64(*id as i64)));
        let done = self
            .db
            .exec(
                &format!(
                    "UPDATE push_deliveries SET status = 2, updated_ms = ?,
                         attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END
                     WHERE uid = ? AND status IN (0, 1) AND message_id IN ({})",
                    placeholders(ids.len())
                ),
                values,
            )
            .await?;
        Ok(done.rows_affected)
    }

    async fn expire(&self, message_id: u64, uid: &str) -> Result<(), PushError> {
        self.db
            .exec(
                "UPDATE push_deliveries SET status = 3, updated_ms = ? WHERE message_id = ? AND uid = ? AND status IN (0, 1)",
                (crate::model::now_ms() as i64, message_id as i64, uid),
            )
            .await?;
        Ok(())
    }

    async fn pending(
        &self,
        uid: &str,
        device: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Pending>, PushError> {
        let rows = self
            .db
            .query(
                "SELECT m.id, m.app, m.mode, m.body, m.created_ms, m.expires_ms, d.attempts
                 FROM push_deliveries d JOIN push_messages m ON m.id = d.message_id
                 WHERE d.uid = ? AND d.status IN (0, 1) AND (d.device = '*' OR d.device = ?) AND m.expires_ms > ?
                 ORDER BY m.id LIMIT ?",
                (uid, device, now_ms as i64, limit as i64),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    message: message_of(row)?,
                    attempts: row.get::<i64>("attempts")? as u32,
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(PushError::from)
    }

    async fn status(&self, message_id: u64) -> Result<Option<MessageStatus>, PushError> {
        let rows = self
            .db
            .query(
                "SELECT id, app, created_ms, expires_ms FROM push_messages WHERE id = ?",
                (message_id as i64,),
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let now = crate::model::now_ms();
        let expires_ms = u64_of(row, "expires_ms")?;
        let recipients = self
            .db
            .query(
                "SELECT uid, device, status, attempts, updated_ms FROM push_deliveries WHERE message_id = ? ORDER BY uid, device",
                (message_id as i64,),
            )
            .await?
            .iter()
            .map(|r| {
                let mut status = DeliveryStatus::from_code(r.get("status")?).unwrap_or(DeliveryStatus::Stored);
                // A TTL that passed is expired even before the sweep records it.
                if now >= expires_ms && matches!(status, DeliveryStatus::Stored | DeliveryStatus::Delivered) {
                    status = DeliveryStatus::Expired;
                }
                Ok(RecipientStatus {
                    uid: r.get("uid")?,
                    device: r.get("device")?,
                    status,
                    attempts: r.get::<i64>("attempts")? as u32,
                    updated_ms: u64_of(r, "updated_ms")?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok(Some(MessageStatus {
            id: message_id,
            app: row.get("app")?,
            created_ms: u64_of(row, "created_ms")?,
            expires_ms,
            recipients,
        }))
    }

    async fn message_for(&self, message_id: u64, uid: &str) -> Result<Option<Message>, PushError> {
        let rows = self
            .db
            .query(
                "SELECT m.id, m.app, m.mode, m.body, m.created_ms, m.expires_ms
                 FROM push_messages m JOIN push_deliveries d ON d.message_id = m.id
                 WHERE m.id = ? AND d.uid = ? LIMIT 1",
                (message_id as i64, uid),
            )
            .await?;
        rows.first()
            .map(message_of)
            .transpose()
            .map_err(PushError::from)
    }

    async fn sweep(&self, now_ms: u64) -> Result<u64, PushError> {
        let done = self
            .db
            .exec(
                "UPDATE push_deliveries SET status = 3, updated_ms = ?
                 WHERE status IN (0, 1) AND message_id IN (SELECT id FROM push_messages WHERE expires_ms <= ?)",
                (now_ms as i64, now_ms as i64),
            )
            .await?;
        Ok(done.rows_affected)
    }

    async fn max_id(&self) -> Result<u64, PushError> {
        let (max,): (Option<i64>,) = self
            .db
            .query_one("SELECT MAX(id) FROM push_messages", ())
            .await?;
        Ok(max.unwrap_or(0) as u64)
    }
}
