//! One statement path for [`Db`], [`Tx`] and [`DbConn`].

use std::future::Future;

use super::retry;
use super::statement::Statement;
use super::{Db, DbConn, DbError, ExecResult, FromRow, Params, Row, Tx, Value};

mod sealed {
    /// Only this crate's handles run statements: the trait can gain methods freely.
    pub trait Sealed {}
}

/// Runs statements: implemented by [`Db`] (and `&Db`), [`Tx`], [`DbConn`], and `&mut` any
/// of them, so a helper written once takes whichever the caller holds.
///
/// ```
/// use longlink_pool::db::{Db, DbError, Executor};
///
/// /// Runs on a `Db`, inside a transaction, or on a dedicated connection alike.
/// async fn user_name(mut db: impl Executor, id: i64) -> Result<Option<String>, DbError> {
///     db.query_optional("SELECT name FROM users WHERE id = ?", (id,)).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), DbError> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let dsn = format!("sqlite://{}/app.db", dir.path().display());
/// let db = Db::open(&dsn)?;
/// db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", ()).await?;
/// db.exec("INSERT INTO users (name) VALUES (?)", ("ada",)).await?;
///
/// assert_eq!(user_name(&db, 1).await?.as_deref(), Some("ada")); // a connection per call
/// let mut tx = db.begin().await?;
/// tx.exec("UPDATE users SET name = ? WHERE id = ?", ("grace", 1)).await?;
/// assert_eq!(user_name(&mut tx, 1).await?.as_deref(), Some("grace")); // sees its own write
/// tx.rollback().await?;
/// let mut conn = db.conn().await?;
/// assert_eq!(user_name(&mut conn, 1).await?.as_deref(), Some("ada"));
/// drop(conn);
/// // The futures are `Send`: a helper's call can be spawned.
/// let task = tokio::spawn(user_name(db.clone(), 2));
/// assert_eq!(task.await.unwrap()?, None);
/// # Ok(()) }
/// ```
///
/// # Who retries, and what "may have run" means
///
/// - **`Db`** borrows a connection per statement. A statement that met a dead connection
///   *before it was sent* runs again on another one (Go's rule: twice on a cached-or-new
///   connection, then once on a new one); nothing else is retried.
/// - **`Tx` and `DbConn`** hold one connection and never retry: another connection would
///   not have the transaction or the session. A broken connection fails every later
///   statement; start again from [`Db::begin`] or [`Db::conn`].
/// - [`DbError::may_have_run`] is `true` only when the connection broke after the
///   statement was sent. On a `Db` or a `DbConn` (autocommit) the statement may have taken
///   effect. Inside a `Tx` it may have run *in the transaction*, which the server rolls
///   back with the lost session — unless it was [`Tx::commit`] that broke: then the
///   transaction may have committed.
/// - A refused statement ([`DbError::Query`], [`DbError::ParamCount`], …) had no effect. In
///   a transaction PostgreSQL then refuses everything up to the rollback; MySQL and SQLite
///   carry on.
///
/// Every future is `Send`. The trait is sealed: its methods may grow.
pub trait Executor: Send + sealed::Sealed {
    /// Runs a statement that returns no rows, its parameters already values (no copy).
    /// Every other method ends here or in [`query_values`](Executor::query_values).
    ///
    /// ```
    /// # use longlink_pool::db::{Db, Executor, Value};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let mut db = Db::builder().max_open(1).open("sqlite://:memory:")?;
    /// db.exec("CREATE TABLE t (n INTEGER)", ()).await?;
    /// let values = [Value::I64(1), Value::I64(2)];
    /// let done = db.exec_values("INSERT INTO t (n) VALUES (?), (?)", &values).await?;
    /// assert_eq!(done.rows_affected, 2);
    /// # Ok(()) }
    /// ```
    fn exec_values(
        &mut self,
        sql: &str,
        values: &[Value],
    ) -> impl Future<Output = Result<ExecResult, DbError>> + Send;

    /// Runs a query, its parameters already values (no copy), and returns every row.
    ///
    /// ```
    /// # use longlink_pool::db::{Db, Executor, Value};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let mut db = Db::open("sqlite://:memory:")?;
    /// let rows = db.query_values("SELECT ? AS n", &[Value::I64(7)]).await?;
    /// assert_eq!(rows[0].get::<i64>("n")?, 7);
    /// # Ok(()) }
    /// ```
    fn query_values(
        &mut self,
        sql: &str,
        values: &[Value],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;

    /// Runs a statement that returns no rows (INSERT, UPDATE, DELETE, DDL).
    ///
    /// ```
    /// # use longlink_pool::db::{Db, Executor};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let db = Db::builder().max_open(1).open("sqlite://:memory:")?;
    /// let mut tx = db.begin().await?;
    /// Executor::exec(&mut tx, "CREATE TABLE t (n INTEGER)", ()).await?;
    /// let done = Executor::exec(&mut tx, "INSERT INTO t (n) VALUES (?)", (1,)).await?;
    /// assert_eq!((done.rows_affected, done.last_insert_id), (1, Some(1)));
    /// # Ok(()) }
    /// ```
    fn exec(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> impl Future<Output = Result<ExecResult, DbError>> + Send {
        let values = params.into_values();
        async move { self.exec_values(sql, &values).await }
    }

    /// Runs a query and returns every row.
    ///
    /// ```
    /// # use longlink_pool::db::{Db, Executor};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let mut db = Db::open("sqlite://:memory:")?;
    /// let rows = Executor::query(&mut db, "SELECT 1 AS a, 'x' AS b", ()).await?;
    /// assert_eq!(rows[0].columns(), ["a", "b"]);
    /// # Ok(()) }
    /// ```
    fn query(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        let values = params.into_values();
        async move { self.query_values(sql, &values).await }
    }

    /// Runs a query and reads every row as `T`: a single value, a tuple, or your
    /// [`FromRow`] type.
    ///
    /// ```
    /// # use longlink_pool::db::{Db, Executor};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let mut db = Db::open("sqlite://:memory:")?;
    /// let sql = "SELECT 1, 'a' UNION ALL SELECT 2, 'b'";
    /// let pairs: Vec<(i64, String)> = Executor::query_as(&mut db, sql, ()).await?;
    /// assert_eq!(pairs, [(1, "a".to_owned()), (2, "b".to_owned())]);
    /// let ids: Vec<i64> = Executor::query_as(&mut db, "SELECT 1 UNION ALL SELECT 2", ()).await?;
    /// assert_eq!(ids, [1, 2]);
    /// # Ok(()) }
    /// ```
    fn query_as<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> impl Future<Output = Result<Vec<T>, DbError>> + Send {
        let values = params.into_values();
        async move {
            let rows = self.query_values(sql, &values).await?;
            rows.iter().map(T::from_row).collect()
        }
    }

    /// Runs a query and reads its first row as `T`; no row is [`DbError::NoRows`].
    ///
    /// ```
    /// # use longlink_pool::db::{Db, DbError, Executor};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), DbError> {
    /// let mut db = Db::open("sqlite://:memory:")?;
    /// let n: i64 = Executor::query_one(&mut db, "SELECT ? + 1", (41,)).await?;
    /// assert_eq!(n, 42);
    /// let none = Executor::query_one::<i64>(&mut db, "SELECT 1 WHERE 0", ()).await;
    /// assert!(matches!(none, Err(DbError::NoRows)));
    /// # Ok(()) }
    /// ```
    fn query_one<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> impl Future<Output = Result<T, DbError>> + Send {
        let values = params.into_values();
        async move {
            let rows = self.query_values(sql, &values).await?;
            T::from_row(rows.first().ok_or(DbError::NoRows)?)
        }
    }

    /// Runs a query and reads its first row as `T`, or `None` when there is no row.
    ///
    /// ```
    /// # use longlink_pool::db::{Db, Executor};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let mut db = Db::open("sqlite://:memory:")?;
    /// let some: Option<String> = Executor::query_optional(&mut db, "SELECT 'x'", ()).await?;
    /// let none: Option<String> = Executor::query_optional(&mut db, "SELECT 'x' WHERE 0", ()).await?;
    /// assert_eq!((some.as_deref(), none), (Some("x"), None));
    /// # Ok(()) }
    /// ```
    fn query_optional<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> impl Future<Output = Result<Option<T>, DbError>> + Send {
        let values = params.into_values();
        async move {
            let rows = self.query_values(sql, &values).await?;
            rows.first().map(T::from_row).transpose()
        }
    }
}

impl Db {
    /// What `Db` and `&Db` run: one statement, on connections from [`Db::with_retry`],
    /// checked before one is borrowed (a mismatch costs no I/O).
    async fn run_exec(&self, sql: &str, values: &[Value]) -> Result<ExecResult, DbError> {
        let stmt = Statement::new(self.driver(), sql, values)?;
        let (done, _conn) = self.with_retry(retry::Exec(&stmt)).await?;
        Ok(done)
    }

    async fn run_query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        let stmt = Statement::new(self.driver(), sql, values)?;
        let (rows, _conn) = self.with_retry(retry::Query(&stmt)).await?;
        Ok(rows)
    }
}

impl sealed::Sealed for Db {}

impl Executor for Db {
    async fn exec_values(&mut self, sql: &str, values: &[Value]) -> Result<ExecResult, DbError> {
        self.run_exec(sql, values).await
    }

    async fn query_values(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        self.run_query(sql, values).await
    }
}

impl sealed::Sealed for &Db {}

impl Executor for &Db {
    async fn exec_values(&mut self, sql: &str, values: &[Value]) -> Result<ExecResult, DbError> {
        self.run_exec(sql, values).await
    }

    async fn query_values(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        self.run_query(sql, values).await
    }
}

impl sealed::Sealed for Tx {}

impl Executor for Tx {
    async fn exec_values(&mut self, sql: &str, values: &[Value]) -> Result<ExecResult, DbError> {
        let conn = self.conn_mut();
        conn.exec(&Statement::new(conn.driver(), sql, values)?)
            .await
    }

    async fn query_values(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        let conn = self.conn_mut();
        conn.query(&Statement::new(conn.driver(), sql, values)?)
            .await
    }
}

impl sealed::Sealed for DbConn {}

impl Executor for DbConn {
    async fn exec_values(&mut self, sql: &str, values: &[Value]) -> Result<ExecResult, DbError> {
        let conn = self.conn_mut();
        conn.exec(&Statement::new(conn.driver(), sql, values)?)
            .await
    }

    async fn query_values(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        let conn = self.conn_mut();
        conn.query(&Statement::new(conn.driver(), sql, values)?)
            .await
    }
}

impl<E: Executor + ?Sized> sealed::Sealed for &mut E {}

impl<E: Executor + ?Sized> Executor for &mut E {
    fn exec_values(
        &mut self,
        sql: &str,
        values: &[Value],
    ) -> impl Future<Output = Result<ExecResult, DbError>> + Send {
        (**self).exec_values(sql, values)
    }

    fn query_values(
        &mut self,
        sql: &str,
        values: &[Value],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        (**self).query_values(sql, values)
    }
}

/// The provided methods again as inherent methods, so `db.exec(…)` needs no import; each
/// only calls the trait's.
macro_rules! inherent_statements {
    ($ty:ty, |$this:ident: $recv:ty| $executor:expr) => {
        impl $ty {
            /// Runs a statement that returns no rows (INSERT, UPDATE, DELETE, DDL); see
            /// [`Executor::exec`].
            pub async fn exec(
                $this: $recv,
                sql: &str,
                params: impl Params,
            ) -> Result<ExecResult, DbError> {
                Executor::exec($executor, sql, params).await
            }

            /// Runs a query and returns every row; see [`Executor::query`].
            pub async fn query(
                $this: $recv,
                sql: &str,
                params: impl Params,
            ) -> Result<Vec<Row>, DbError> {
                Executor::query($executor, sql, params).await
            }

            /// Runs a query and reads every row as `T` (a single value, a tuple, or your
            /// [`FromRow`] type); see [`Executor::query_as`].
            pub async fn query_as<T: FromRow>(
                $this: $recv,
                sql: &str,
                params: impl Params,
            ) -> Result<Vec<T>, DbError> {
                Executor::query_as($executor, sql, params).await
            }

            /// Runs a query and reads its first row as `T`; no row is [`DbError::NoRows`].
            /// See [`Executor::query_one`].
            pub async fn query_one<T: FromRow>(
                $this: $recv,
                sql: &str,
                params: impl Params,
            ) -> Result<T, DbError> {
                Executor::query_one($executor, sql, params).await
            }

            /// Runs a query and reads its first row as `T`, or `None` when there is no row.
            /// See [`Executor::query_optional`].
            pub async fn query_optional<T: FromRow>(
                $this: $recv,
                sql: &str,
                params: impl Params,
            ) -> Result<Option<T>, DbError> {
                Executor::query_optional($executor, sql, params).await
            }
        }
    };
}

inherent_statements!(Db, |self: &Self| &mut &*self);
inherent_statements!(Tx, |self: &mut Self| self);
inherent_statements!(DbConn, |self: &mut Self| self);
