//! The message store in SQL: SQLite or MySQL/MariaDB through `longlink-pool`, the same
//! statements on both.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use longlink_pool::db::{Db, DbError, Driver, Row, Tx, Value};

use super::{Claimed, MessageStatus, Pending, Recipient, RecipientStatus, Saver};
use crate::PushError;
use crate::model::{DeliveryStatus, Message, mode_code, mode_from_code};

/// The SQL store (SQLite or MySQL/MariaDB).
#[derive(Clone)]
pub struct SqlSaver {
    db: Db,
    /// How long a store may take before its COMMIT is sent ([`SqlSaver::commit_within`]);
    /// `None`: as long as it takes.
    store_budget: Option<Duration>,
}

/// A store up to its COMMIT: the transaction to commit, or the answer already found for
/// its idempotency key (nothing to commit).
enum Staged {
    Open(Tx),
    Claimed(Option<Claimed>),
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
            "CREATE TABLE IF NOT EXISTS push_keys (
                app VARCHAR(64) NOT NULL, idem_key VARCHAR(128) NOT NULL,
                message_id BIGINT NOT NULL, recipients BIGINT NOT NULL, stored INTEGER NOT NULL,
                expires_ms BIGINT NOT NULL, PRIMARY KEY (app, idem_key))",
            (),
        )
        .await?;
        Ok(SqlSaver {
            db,
            store_budget: None,
        })
    }

    /// `INSERT … ` that does nothing where the key exists, in this database's words.
    fn insert_ignore(&self, rest: &str) -> String {
        if self.db.driver() == Driver::Mysql {
            format!("INSERT IGNORE INTO {rest}")
        } else {
            format!("INSERT OR IGNORE INTO {rest}")
        }
    }

    /// The push that holds `key`.
    async fn claimed(&self, app: &str, key: &str) -> Result<Option<Claimed>, PushError> {
        let row: Option<(i64, i64, i64)> = self
            .db
            .query_optional(
                "SELECT message_id, recipients, stored FROM push_keys WHERE app = ? AND idem_key = ?",
                (app, key),
            )
            .await?;
        Ok(row.map(|(id, recipients, stored)| Claimed {
            id: id as u64,
            recipients: recipients as u64,
            stored: stored != 0,
        }))
    }

    /// Bounds a store's work before its COMMIT by `budget`: past it, the store gives up and
    /// answers that it did not run (the uncommitted transaction is rolled back with its
    /// connection). Without it, a store on a connection that went silent — a partition
    /// between the saver and MySQL drops packets, resets nothing — hangs until the caller's
    /// RPC deadline, and that answer only says it *may* have run: the caller cannot move it
    /// to another saver and must refuse the push. Give it less than the callers' deadline.
    pub fn commit_within(mut self, budget: Duration) -> SqlSaver {
        self.store_budget = Some(budget);
        self
    }

    /// A store's statements up to its COMMIT.
    async fn stage(
        &self,
        message: &Message,
        recipients: &[Recipient],
        key: Option<&str>,
    ) -> Result<Staged, PushError> {
        let mut tx = self.db.begin().await?;
        if let Some(key) = key {
            // The key first, in the same transaction: of two pushes with one key, the
            // second waits for the first and finds its row.
            let done = tx
                .exec(
                    &self.insert_ignore(
                        "push_keys (app, idem_key, message_id, recipients, stored, expires_ms) VALUES (?, ?, ?, ?, 1, ?)",
                    ),
                    (
                        message.app.as_str(),
                        key,
                        message.id as i64,
                        recipients.len() as i64,
                        message.expires_ms as i64,
                    ),
                )
                .await?;
            if done.rows_affected == 0 {
                tx.rollback().await?;
                return Ok(Staged::Claimed(self.claimed(&message.app, key).await?));
            }
        }
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
        Ok(Staged::Open(tx))
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
    async fn store(
        &self,
        message: Message,
        recipients: Vec<Recipient>,
        key: Option<String>,
    ) -> Result<Option<Claimed>, PushError> {
        let staged = self.stage(&message, &recipients, key.as_deref());
        let staged = match self.store_budget {
            Some(budget) => tokio::time::timeout(budget, staged).await.map_err(|_| {
                // Nothing was committed: proven not to have run, whatever was sent.
                PushError::unavailable(
                    "store",
                    format!("no answer within {budget:?} before the commit; nothing was stored"),
                )
            })?,
            None => staged.await,
        }?;
        match staged {
            Staged::Open(tx) => {
                tx.commit().await?;
                Ok(None)
            }
            Staged::Claimed(claimed) => Ok(claimed),
        }
    }

    async fn claim(
        &self,
        app: String,
        key: String,
        id: u64,
        recipients: u64,
        expires_ms: u64,
    ) -> Result<Option<Claimed>, PushError> {
        let done = self
            .db
            .exec(
                &self.insert_ignore(
                    "push_keys (app, idem_key, message_id, recipients, stored, expires_ms) VALUES (?, ?, ?, ?, 0, ?)",
                ),
                (app.as_str(), key.as_str(), id as i64, recipients as i64, expires_ms as i64),
            )
            .await?;
        if done.rows_affected == 1 {
            return Ok(None);
        }
        self.claimed(&app, &key).await
    }

    async fn delivered(
        &self,
        message_id: u64,
        uids: Vec<String>,
        max_attempts: u32,
    ) -> Result<(), PushError> {
        for chunk in uids.chunks(INSERT_CHUNK) {
            let mut values = vec![
                Value::I64(i64::from(max_attempts.max(1))),
                Value::I64(crate::model::now_ms() as i64),
                Value::I64(message_id as i64),
            ];
            values.extend(chunk.iter().map(|u| Value::Text(u.clone())));
            self.db
                .exec(
                    &format!(
                        // The last send the client is trusted with gives the row up now:
                        // a status query says so at once, without a sweep or a reconnect.
                        // (`status` first: MySQL would read the new `attempts` after.)
                        "UPDATE push_deliveries
                         SET status = CASE WHEN attempts + 1 >= ? THEN 3 ELSE 1 END,
                             attempts = attempts + 1, updated_ms = ?
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

    async fn sweep(&self, now_ms: u64) -> Result<u64, PushError> {
        let past_ttl = self
            .db
            .exec(
                "UPDATE push_deliveries SET status = 3, updated_ms = ?
                 WHERE status IN (0, 1) AND message_id IN (SELECT id FROM push_messages WHERE expires_ms <= ?)",
                (now_ms as i64, now_ms as i64),
            )
            .await?;
        // Idempotency keys live as long as their message.
        self.db
            .exec(
                "DELETE FROM push_keys WHERE expires_ms <= ?",
                (now_ms as i64,),
            )
            .await?;
        Ok(past_ttl.rows_affected)
    }

    async fn max_id(&self) -> Result<u64, PushError> {
        let (max,): (Option<i64>,) = self
            .db
            .query_one("SELECT MAX(id) FROM push_messages", ())
            .await?;
        Ok(max.unwrap_or(0) as u64)
    }
}
