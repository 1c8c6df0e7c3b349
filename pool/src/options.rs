//! Pool limits and policies.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// When to test an idle connection with [`Manager::check`](crate::Manager::check) before
/// handing it out.
///
/// The default, `IdleFor(500 ms)`, is HikariCP's rule: a connection used within the last
/// half second is trusted; one idle longer is pinged first. bb8 and deadpool test every
/// checkout; sqlx pings on every acquire and release, which costs it 20–200× on a warm pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestOnAcquire {
    /// Never test; a broken connection shows up as a failed statement (which the database
    /// layer retries when it proves nothing ran).
    Never,
    /// Test every connection handed out from idle.
    Always,
    /// Test connections idle for longer than this.
    IdleFor(Duration),
}

impl Default for TestOnAcquire {
    fn default() -> Self {
        TestOnAcquire::IdleFor(Duration::from_millis(500))
    }
}

/// The limits and policies of a pool. Build with [`Pool::builder`](crate::Pool::builder).
///
/// ```
/// use std::time::Duration;
/// use longlink_pool::{Options, TestOnAcquire};
///
/// let options = Options::default();
/// assert_eq!(options.max_open, 10);
/// assert_eq!(options.max_idle, 10);
/// assert_eq!(options.acquire_timeout, Duration::from_secs(30));
/// assert_eq!(options.test_on_acquire, TestOnAcquire::IdleFor(Duration::from_millis(500)));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Most connections open at once, in use or idle (Go: `SetMaxOpenConns`). Default 10.
    pub max_open: usize,
    /// Most idle connections kept; extra ones are closed when returned (Go:
    /// `SetMaxIdleConns`). Default: `max_open` (Go's default of 2 makes a busy pool churn).
    pub max_idle: usize,
    /// Idle connections the reaper keeps open ahead of demand. Default 0: nothing is opened
    /// until it is needed.
    pub min_idle: usize,
    /// Close connections older than this, minus a random jitter of up to a tenth so they do
    /// not all expire together (Go: `SetConnMaxLifetime`). Default 30 minutes.
    pub max_lifetime: Option<Duration>,
    /// Close connections idle longer than this (Go: `SetConnMaxIdleTime`). Default 10 minutes.
    pub max_idle_time: Option<Duration>,
    /// How long an acquire may wait for a connection (including connecting) before it fails.
    /// Default 30 seconds.
    pub acquire_timeout: Duration,
    /// When to ping an idle connection before handing it out.
    pub test_on_acquire: TestOnAcquire,
    /// Warn (with the caller's location) about connections held longer than this. Default
    /// off.
    pub leak_threshold: Option<Duration>,
    /// How often the reaper runs; by default derived from the lifetimes, the leak threshold
    /// and `min_idle` (between 100 ms and 30 s).
    pub reap_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_open: 10,
            max_idle: 10,
            min_idle: 0,
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_idle_time: Some(Duration::from_secs(10 * 60)),
            acquire_timeout: Duration::from_secs(30),
            test_on_acquire: TestOnAcquire::default(),
            leak_threshold: None,
            reap_interval: None,
        }
    }
}

impl Options {
    /// The reaper's period, or `None` when nothing needs one.
    pub(crate) fn reaper_period(&self) -> Option<Duration> {
        if let Some(period) = self.reap_interval {
            return Some(period);
        }
        let quarter = |d: Duration| d / 4;
        let candidates = [
            self.max_lifetime.map(quarter),
            self.max_idle_time.map(quarter),
            self.leak_threshold.map(quarter),
            (self.min_idle > 0).then(|| Duration::from_secs(1)),
        ];
        let period = candidates.into_iter().flatten().min()?;
        Some(period.clamp(Duration::from_millis(100), Duration::from_secs(30)))
    }
}

/// Builds a [`Pool`](crate::Pool).
///
/// ```
/// use std::time::Duration;
/// # use longlink_pool::Manager;
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     async fn check(&self, _: &mut ()) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// let pool = longlink_pool::Pool::builder()
///     .max_open(8)
///     .max_idle(4)
///     .max_lifetime(Some(Duration::from_secs(600)))
///     .acquire_timeout(Duration::from_secs(2))
///     .build(M);
/// assert_eq!(pool.stats().max_open, 8);
/// assert_eq!(pool.stats().open, 0); // nothing opened yet
/// ```
pub struct Builder<M> {
    options: Options,
    max_idle_set: bool,
    /// The manager type, inferred from `build`'s argument.
    manager: PhantomData<fn() -> M>,
}

impl<M> Default for Builder<M> {
    fn default() -> Self {
        Builder {
            options: Options::default(),
            max_idle_set: false,
            manager: PhantomData,
        }
    }
}

impl<M> Clone for Builder<M> {
    fn clone(&self) -> Self {
        Builder {
            options: self.options.clone(),
            max_idle_set: self.max_idle_set,
            manager: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("options", &self.options)
            .finish()
    }
}

impl<M> Builder<M> {
    /// See [`Options::max_open`]. Values below 1 are raised to 1.
    pub fn max_open(mut self, n: usize) -> Builder<M> {
        self.options.max_open = n.max(1);
        self
    }

    /// See [`Options::max_idle`] (capped at `max_open`).
    pub fn max_idle(mut self, n: usize) -> Builder<M> {
        self.options.max_idle = n;
        self.max_idle_set = true;
        self
    }

    /// See [`Options::min_idle`] (capped at `max_idle`).
    pub fn min_idle(mut self, n: usize) -> Builder<M> {
        self.options.min_idle = n;
        self
    }

    /// See [`Options::max_lifetime`].
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Builder<M> {
        self.options.max_lifetime = lifetime;
        self
    }

    /// See [`Options::max_idle_time`].
    pub fn max_idle_time(mut self, idle: Option<Duration>) -> Builder<M> {
        self.options.max_idle_time = idle;
        self
    }

    /// See [`Options::acquire_timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Builder<M> {
        self.options.acquire_timeout = timeout;
        self
    }

    /// See [`Options::test_on_acquire`].
    pub fn test_on_acquire(mut self, policy: TestOnAcquire) -> Builder<M> {
        self.options.test_on_acquire = policy;
        self
    }

    /// See [`Options::leak_threshold`].
    pub fn leak_threshold(mut self, threshold: Option<Duration>) -> Builder<M> {
        self.options.leak_threshold = threshold;
        self
    }

    /// See [`Options::reap_interval`].
    pub fn reap_interval(mut self, every: Duration) -> Builder<M> {
        self.options.reap_interval = Some(every);
        self
    }

    /// The options as built, with `max_idle` and `min_idle` capped.
    pub fn options(&self) -> Options {
        let mut options = self.options.clone();
        if !self.max_idle_set {
            options.max_idle = options.max_open;
        }
        options.max_idle = options.max_idle.min(options.max_open);
        options.min_idle = options.min_idle.min(options.max_idle);
        options
    }
}

impl<M: crate::Manager> Builder<M> {
    /// Builds the pool. No connection is opened and nothing is spawned: the first acquire
    /// connects, and starts the reaper if one is needed.
    pub fn build(self, manager: M) -> crate::Pool<M> {
        crate::Pool::new(manager, self.options())
    }
}
