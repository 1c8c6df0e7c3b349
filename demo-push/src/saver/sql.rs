//! The message store in SQL: SQLite or MySQL/MariaDB through `longlink-pool`, the same
//! statements on both.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use longlink_pool::db::{Db, DbError, Driver, Row, Value};

use super::{MessageStatus, Pending, Recipient, RecipientStatus, Saver};
use crate::PushError;
use crate::model::{DeliveryStatus, Message, mode_code, mode_from_code};

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
        db.exec(
            "CREATE INDEX IF NOT EXISTS push_deliveries_attempts ON push_deliveries (status, attempts)",
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
    async fn store(&self, message: Message, recipients: Vec<Recipient>) -> Result<(), PushError> {
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

    async fn delivered(&self, message_id: u64, uids: Vec<String>) -> Result<(), PushError> {
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

    async fn ack(&self, uid: String, ids: Vec<u64>) -> Result<u64, PushError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut values = vec![Value::I64(crate::model::now_ms() as i64), Value::Text(uid)];
        values.extend(ids.iter().map(|id| Value::I64(*id as i64)));
        let done = self
            .db
            .exec(
                &format!(
                    "UPDATE push_deliveries SET status = 2, updated_ms = ?,
                         attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END
                     WHERE uid = ? AND status IN (0, 1, 3) AND message_id IN ({})",
                    placeholders(ids.len())
                ),
                values,
            )
            .await?;
        Ok(done.rows_affected)
    }

    async fn expire(&self, message_id: u64, uid: String) -> Result<(), PushError> {
        self.db
            .exec(
                "UPDATE push_deliveries SET status = 3, updated_ms = ? WHERE message_id = ? AND uid = ? AND status IN (0, 1)",
                (crate::model::now_ms() as i64, message_id as i64, uid.as_str()),
            )
            .await?;
        Ok(())
    }

    async fn pending(
        &self,
        uid: String,
        device: String,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<Pending>, PushError> {
        let limit = limit.min(1000);
        let rows = self
            .db
            .query(
                "SELECT m.id, m.app, m.mode, m.body, m.created_ms, m.expires_ms, d.attempts
                 FROM push_deliveries d JOIN push_messages m ON m.id = d.message_id
                 WHERE d.uid = ? AND d.status IN (0, 1) AND (d.device = '*' OR d.device = ?) AND m.expires_ms > ?
                 ORDER BY m.id LIMIT ?",
                (uid.as_str(), device.as_str(), now_ms as i64, i64::from(limit)),
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

    async fn message_for(
        &self,
        message_id: u64,
        uid: String,
    ) -> Result<Option<Message>, PushError> {
        let rows = self
            .db
            .query(
                "SELECT m.id, m.app, m.mode, m.body, m.created_ms, m.expires_ms
                 FROM push_messages m JOIN push_deliveries d ON d.message_id = m.id
                 WHERE m.id = ? AND d.uid = ? LIMIT 1",
                (message_id as i64, uid.as_str()),
            )
            .await?;
        rows.first()
            .map(message_of)
            .transpose()
            .map_err(PushError::from)
    }

    async fn sweep(&self, now_ms: u64, max_attempts: u32) -> Result<u64, PushError> {
        let past_ttl = self
            .db
            .exec(
                "UPDATE push_deliveries SET status = 3, updated_ms = ?
                 WHERE status IN (0, 1) AND message_id IN (SELECT id FROM push_messages WHERE expires_ms <= ?)",
                (now_ms as i64, now_ms as i64),
            )
            .await?;
        // Sent as often as the client is trusted, never ACKed: given up now, so a status
        // query tells the truth without waiting for the user's next connect.
        let exhausted = self
            .db
            .exec(
                "UPDATE push_deliveries SET status = 3, updated_ms = ? WHERE status = 1 AND attempts >= ?",
                (now_ms as i64, i64::from(max_attempts.max(1))),
            )
            .await?;
        Ok(past_ttl.rows_affected + exhausted.rows_affected)
    }

    async fn max_id(&self) -> Result<u64, PushError> {
        let (max,): (Option<i64>,) = self
            .db
            .query_one("SELECT MAX(id) FROM push_messages", ())
            .await?;
        Ok(max.unwrap_or(0) as u64)
    }
}
