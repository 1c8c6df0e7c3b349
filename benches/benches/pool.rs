//! Pool benchmarks.
//!
//! `cargo bench -p longlink-benches --bench pool`
//!
//! 1. `overhead/{longlink,bb8,deadpool,sqlx}/tasks1` — warm acquire+release, one task, a
//!    trivial connection (no database); sqlx's pool over in-memory SQLite, the cheapest
//!    connection it has. `overhead/*/tasks64_pool8` — 64 tasks share a pool of 8, each
//!    holding its connection across one yield; time per acquire+release over all tasks.
//! 2. `select1/{mysql,postgres}/{short,pooled}/c{1,32}` — `SELECT 1`, connecting per query
//!    vs through the pool, with 1 and 32 concurrent tasks.
//! 3. `point_select/{mysql,postgres}/{longlink,longlink_db,bb8,bb8_unchecked,deadpool,sqlx}/c32`
//!    — a primary-key select at 32 tasks: our pool, bb8 (default: pings every checkout;
//!    and with `test_on_check_out(false)`) and deadpool (no ping, like deadpool-postgres'
//!    default) over the *same* driver connection (through the adapters), our `Db` layer, and
//!    sqlx's own pool and driver (which pings on acquire by default).
//!
//! Every run uses a 2-worker multi-thread tokio runtime. The database groups need MariaDB
//! and PostgreSQL on 127.0.0.1 (`LONGLINK_MYSQL_URL`, `LONGLINK_POSTGRES_URL`); they are
//! skipped with a note when unreachable.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use longlink_benches::report::{Comparison, print_ratios};
use longlink_pool::db::{Db, MysqlManager, PgManager};
use longlink_pool::{Manager, Pool};
use mysql_async::prelude::Queryable;
use sqlx::Connection;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A connection that costs nothing: the pool core alone is measured.
#[derive(Debug, Clone, Copy)]
struct Free;

impl Manager for Free {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    async fn check(&self, _: &mut u64) -> std::io::Result<()> {
        Ok(())
    }
}

impl bb8::ManageConnection for Free {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

impl deadpool::managed::Manager for Free {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

/// Runs `iters` operations split over `tasks` tasks; returns the wall time.
fn run_split<F, Fut>(rt: &Runtime, iters: u64, tasks: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let op = Arc::clone(&op);
                let n = iters / tasks + u64::from(t < iters % tasks);
                tokio::spawn(async move {
                    for _ in 0..n {
                        op().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("overhead");
    group.throughput(Throughput::Elements(1));
    for (tasks, pool_size, name) in [(1u64, 8u32, "tasks1"), (64, 8, "tasks64_pool8")] {
        // Hold the connection across one yield when many tasks share the pool, so they
        // really contend for the 8 connections.
        let hold = tasks > 1;

        let ours = Pool::builder().max_open(pool_size as usize).build(Free);
        rt.block_on(async { drop(ours.acquire().await.unwrap()) });
        group.bench_function(BenchmarkId::new("longlink", name), |b| {
            b.iter_custom(|iters| {
                let pool = ours.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.acquire().await.unwrap();
                        if hold {
                            tokio::task::yield_now().await;
                        }
                        black_box(&*conn);
                    }
                })
            })
        });

        let bb8_pool = rt
            .block_on(bb8::Pool::builder().max_size(pool_size).build(Free))
            .unwrap();
        group.bench_function(BenchmarkId::new("bb8", name), |b| {
            b.iter_custom(|iters| {
                let pool = bb8_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get_owned().await.unwrap();
                        if hold {
                            tokio::task::yield_now().await;
                        }
                        black_box(&*conn);
                    }
                })
            })
        });

        let deadpool_pool: deadpool::managed::Pool<Free> = deadpool::managed::Pool::builder(Free)
            .max_size(pool_size as usize)
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("deadpool", name), |b| {
            b.iter_custom(|iters| {
                let pool = deadpool_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get().await.unwrap();
                        if hold {
                            tokio::task::yield_now().await;
                        }
                        black_box(&*conn);
                    }
                })
            })
        });

        let sqlx_pool = rt
            .block_on(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(pool_size)
                    .min_connections(pool_size)
                    .connect("sqlite::memory:"),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("sqlx", name), |b| {
            b.iter_custom(|iters| {
                let pool = sqlx_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.acquire().await.unwrap();
                        if hold {
                            tokio::task::yield_now().await;
                        }
                        black_box(&conn);
                    }
                })
            })
        });
    }
    group.finish();
}

fn mysql_url() -> String {
    std::env::var("LONGLINK_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn postgres_url() -> String {
    std::env::var("LONGLINK_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn reachable(rt: &Runtime, dsn: &str) -> bool {
    let db = Db::builder()
        .acquire_timeout(Duration::from_secs(2))
        .open(dsn)
        .unwrap();
    let ok = rt.block_on(db.ping()).is_ok();
    if !ok {
        println!("skipping {dsn}: not reachable");
    }
    ok
}

fn select1(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("select1");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for tasks in [1u64, 32] {
        let c = format!("c{tasks}");
        if reachable(&rt, &mysql_url()) {
            let opts = mysql_async::Opts::from_url(&mysql_url()).unwrap();
            group.bench_function(BenchmarkId::new("mysql/short", &c), |b| {
                b.iter_custom(|iters| {
                    let opts = opts.clone();
                    run_split(&rt, iters, tasks, move || {
                        let opts = opts.clone();
                        async move {
                            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                            let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
                            black_box(one);
                            conn.disconnect().await.unwrap();
                        }
                    })
                })
            });
            let db = Db::builder().max_open(32).open(&mysql_url()).unwrap();
            group.bench_function(BenchmarkId::new("mysql/pooled", &c), |b| {
                b.iter_custom(|iters| {
                    let db = db.clone();
                    run_split(&rt, iters, tasks, move || {
                        let db = db.clone();
                        async move {
                            black_box(db.query("SELECT 1", ()).await.unwrap());
                        }
                    })
                })
            });
        }
        if reachable(&rt, &postgres_url()) {
            group.bench_function(BenchmarkId::new("postgres/short", &c), |b| {
                b.iter_custom(|iters| {
                    run_split(&rt, iters, tasks, move || async move {
                        let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
                        let one: i32 = sqlx::query_scalar("SELECT 1")
                            .fetch_one(&mut conn)
                            .await
                            .unwrap();
                        black_box(one);
                        conn.close().await.unwrap();
                    })
                })
            });
            let db = Db::builder().max_open(32).open(&postgres_url()).unwrap();
            group.bench_function(BenchmarkId::new("postgres/pooled", &c), |b| {
                b.iter_custom(|iters| {
                    let db = db.clone();
                    run_split(&rt, iters, tasks, move || {
                        let db = db.clone();
                        async move {
                            black_box(db.query("SELECT 1", ()).await.unwrap());
                        }
                    })
                })
            });
        }
    }
    group.finish();
}

const ROWS: i64 = 1000;

fn point_select(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("point_select");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let tasks = 32u64;
    let size = 16u32;

    if reachable(&rt, &mysql_url()) {
        let setup = Db::open(&mysql_url()).unwrap();
        rt.block_on(async {
            setup.exec("CREATE TABLE IF NOT EXISTS bench_users (id BIGINT PRIMARY KEY, name VARCHAR(64))", ()).await.unwrap();
            setup.exec("DELETE FROM bench_users", ()).await.unwrap();
            for id in 0..ROWS {
                setup.exec("INSERT INTO bench_users VALUES (?, ?)", (id, format!("user{id}"))).await.unwrap();
            }
        });
        const Q: &str = "SELECT id, name FROM bench_users WHERE id = ?";
        async fn raw(conn: &mut mysql_async::Conn, id: i64) {
            let row: Option<(i64, String)> = conn.exec_first(Q, (id,)).await.unwrap();
            black_box(row);
        }
        let ours = Pool::builder()
            .max_open(size as usize)
            .build(MysqlManager::new(&mysql_url()).unwrap());
        group.bench_function(BenchmarkId::new("mysql/longlink", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = ours.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.acquire().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let db = Db::builder()
            .max_open(size as usize)
            .open(&mysql_url())
            .unwrap();
        group.bench_function(BenchmarkId::new("mysql/longlink_db", "c32"), |b| {
            b.iter_custom(|iters| {
                let db = db.clone();
                run_split(&rt, iters, tasks, move || {
                    let db = db.clone();
                    async move {
                        let row: (i64, String) = db.query_one(Q, (fastrand_id(),)).await.unwrap();
                        black_box(row);
                    }
                })
            })
        });
        let bb8_pool = rt
            .block_on(
                bb8::Pool::builder()
                    .max_size(size)
                    .build(MysqlManager::new(&mysql_url()).unwrap()),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("mysql/bb8", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = bb8_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.get_owned().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let bb8_unchecked = rt
            .block_on(
                bb8::Pool::builder()
                    .max_size(size)
                    .test_on_check_out(false)
                    .build(MysqlManager::new(&mysql_url()).unwrap()),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("mysql/bb8_unchecked", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = bb8_unchecked.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.get_owned().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let dp: deadpool::managed::Pool<MysqlManager> =
            deadpool::managed::Pool::builder(MysqlManager::new(&mysql_url()).unwrap())
                .max_size(size as usize)
                .build()
                .unwrap();
        group.bench_function(BenchmarkId::new("mysql/deadpool", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = dp.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.get().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let sqlx_pool = rt
            .block_on(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(size)
                    .connect(&mysql_url()),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("mysql/sqlx", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = sqlx_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move {
                        let row: (i64, String) = sqlx::query_as(Q)
                            .bind(fastrand_id())
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                        black_box(row);
                    }
                })
            })
        });
    }

    if reachable(&rt, &postgres_url()) {
        let setup = Db::open(&postgres_url()).unwrap();
        rt.block_on(async {
            setup
                .exec(
                    "CREATE TABLE IF NOT EXISTS bench_users (id BIGINT PRIMARY KEY, name TEXT)",
                    (),
                )
                .await
                .unwrap();
            setup.exec("DELETE FROM bench_users", ()).await.unwrap();
            for id in 0..ROWS {
                setup
                    .exec(
                        "INSERT INTO bench_users VALUES ($1, $2)",
                        (id, format!("user{id}")),
                    )
                    .await
                    .unwrap();
            }
        });
        const Q: &str = "SELECT id, name FROM bench_users WHERE id = $1";
        async fn raw(conn: &mut sqlx::PgConnection, id: i64) {
            let row: (i64, String) = sqlx::query_as(Q).bind(id).fetch_one(conn).await.unwrap();
            black_box(row);
        }
        let ours = Pool::builder()
            .max_open(size as usize)
            .build(PgManager::new(&postgres_url()).unwrap());
        group.bench_function(BenchmarkId::new("postgres/longlink", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = ours.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.acquire().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let db = Db::builder()
            .max_open(size as usize)
            .open(&postgres_url())
            .unwrap();
        group.bench_function(BenchmarkId::new("postgres/longlink_db", "c32"), |b| {
            b.iter_custom(|iters| {
                let db = db.clone();
                run_split(&rt, iters, tasks, move || {
                    let db = db.clone();
                    async move {
                        let row: (i64, String) = db.query_one(Q, (fastrand_id(),)).await.unwrap();
                        black_box(row);
                    }
                })
            })
        });
        let bb8_pool = rt
            .block_on(
                bb8::Pool::builder()
                    .max_size(size)
                    .build(PgManager::new(&postgres_url()).unwrap()),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("postgres/bb8", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = bb8_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.get_owned().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let bb8_unchecked = rt
            .block_on(
                bb8::Pool::builder()
                    .max_size(size)
                    .test_on_check_out(false)
                    .build(PgManager::new(&postgres_url()).unwrap()),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("postgres/bb8_unchecked", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = bb8_unchecked.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.get_owned().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let dp: deadpool::managed::Pool<PgManager> =
            deadpool::managed::Pool::builder(PgManager::new(&postgres_url()).unwrap())
                .max_size(size as usize)
                .build()
                .unwrap();
        group.bench_function(BenchmarkId::new("postgres/deadpool", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = dp.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move { raw(&mut pool.get().await.unwrap(), fastrand_id()).await }
                })
            })
        });
        let sqlx_pool = rt
            .block_on(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(size)
                    .connect(&postgres_url()),
            )
            .unwrap();
        group.bench_function(BenchmarkId::new("postgres/sqlx", "c32"), |b| {
            b.iter_custom(|iters| {
                let pool = sqlx_pool.clone();
                run_split(&rt, iters, tasks, move || {
                    let pool = pool.clone();
                    async move {
                        let row: (i64, String) = sqlx::query_as(Q)
                            .bind(fastrand_id())
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                        black_box(row);
                    }
                })
            })
        });
    }
    group.finish();
}

/// A row id spread over the table, without a shared RNG.
fn fastrand_id() -> i64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    (N.fetch_add(7919, Ordering::Relaxed) % ROWS as u64) as i64
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    overhead(&mut criterion);
    select1(&mut criterion);
    point_select(&mut criterion);
    criterion.final_summary();

    let row = |label: &'static str, subject: &'static str, baseline: &'static str| Comparison {
        label,
        subject,
        baseline,
    };
    print_ratios(
        "pool: times faster than the baseline (same run)",
        &[
            row(
                "1 task: longlink vs bb8",
                "overhead/longlink/tasks1",
                "overhead/bb8/tasks1",
            ),
            row(
                "1 task: longlink vs deadpool",
                "overhead/longlink/tasks1",
                "overhead/deadpool/tasks1",
            ),
            row(
                "1 task: longlink vs sqlx",
                "overhead/longlink/tasks1",
                "overhead/sqlx/tasks1",
            ),
            row(
                "64 tasks/8 conns: longlink vs bb8",
                "overhead/longlink/tasks64_pool8",
                "overhead/bb8/tasks64_pool8",
            ),
            row(
                "64 tasks/8 conns: longlink vs deadpool",
                "overhead/longlink/tasks64_pool8",
                "overhead/deadpool/tasks64_pool8",
            ),
            row(
                "64 tasks/8 conns: longlink vs sqlx",
                "overhead/longlink/tasks64_pool8",
                "overhead/sqlx/tasks64_pool8",
            ),
            row(
                "mysql SELECT 1, c1: pooled vs short",
                "select1/mysql/pooled/c1",
                "select1/mysql/short/c1",
            ),
            row(
                "mysql SELECT 1, c32: pooled vs short",
                "select1/mysql/pooled/c32",
                "select1/mysql/short/c32",
            ),
            row(
                "postgres SELECT 1, c1: pooled vs short",
                "select1/postgres/pooled/c1",
                "select1/postgres/short/c1",
            ),
            row(
                "postgres SELECT 1, c32: pooled vs short",
                "select1/postgres/pooled/c32",
                "select1/postgres/short/c32",
            ),
            row(
                "mysql point select: longlink vs bb8",
                "point_select/mysql/longlink/c32",
                "point_select/mysql/bb8/c32",
            ),
            row(
                "mysql point select: longlink vs bb8 unchecked",
                "point_select/mysql/longlink/c32",
                "point_select/mysql/bb8_unchecked/c32",
            ),
            row(
                "mysql point select: longlink vs deadpool",
                "point_select/mysql/longlink/c32",
                "point_select/mysql/deadpool/c32",
            ),
            row(
                "mysql point select: longlink vs sqlx",
                "point_select/mysql/longlink/c32",
                "point_select/mysql/sqlx/c32",
            ),
            row(
                "mysql point select: Db layer vs raw",
                "point_select/mysql/longlink_db/c32",
                "point_select/mysql/longlink/c32",
            ),
            row(
                "postgres point select: longlink vs bb8",
                "point_select/postgres/longlink/c32",
                "point_select/postgres/bb8/c32",
            ),
            row(
                "postgres point select: longlink vs bb8 unchecked",
                "point_select/postgres/longlink/c32",
                "point_select/postgres/bb8_unchecked/c32",
            ),
            row(
                "postgres point select: longlink vs deadpool",
                "point_select/postgres/longlink/c32",
                "point_select/postgres/deadpool/c32",
            ),
            row(
                "postgres point select: longlink vs sqlx",
                "point_select/postgres/longlink/c32",
                "point_select/postgres/sqlx/c32",
            ),
            row(
                "postgres point select: Db layer vs raw",
                "point_select/postgres/longlink_db/c32",
                "point_select/postgres/longlink/c32",
            ),
        ],
    );
}
