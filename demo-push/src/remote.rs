//! The seam between a service and its callers in other processes. A service's interface is
//! written once, with [`contract!`](crate::contract): a trait, its RPC declaration, a server
//! adapter ([`Served`]) that serves any implementation, and a client ([`Remote`]) that *is*
//! an implementation. A new method is one line there plus its implementation in each backend.
//!
//! Errors cross the wire as statuses ([`status`]) with the RPC's flags: a [`PushError`]
//! that proves nothing was done travels as NOT_PROCESSED, so the caller's error says so too.

use std::sync::Arc;
use std::time::Duration;

use longlink_rpc::{Balancer, RpcError, ServiceError, Strategy};

use crate::PushError;
use crate::metrics::RpcLatency;

/// Application statuses of the internal services.
pub mod status {
    /// The request was not valid ([`PushError::Invalid`](crate::PushError::Invalid)).
    pub const INVALID: u16 = 1000;
    /// The message store (MySQL) or Redis failed.
    pub const STORE: u16 = 1001;
    /// A bounded queue was full.
    pub const OVERLOADED: u16 = 1002;
    /// A service further down failed.
    pub const UNAVAILABLE: u16 = 1003;
}

/// Serves an implementation of a contract's trait over RPC:
/// `register_svc::Server::new(Served(register))`.
#[derive(Debug)]
pub struct Served<T: ?Sized>(pub Arc<T>);

/// A contract's trait implemented by calls to another process (one instance, or several
/// behind a [`Balancer`]). Build it with [`Remote::new`] from a typed client.
#[derive(Debug, Clone)]
pub struct Remote<C> {
    /// The typed client.
    pub client: C,
}

impl<C> Remote<C> {
    /// Calls go through `client`.
    pub fn new(client: C) -> Remote<C> {
        Remote { client }
    }
}

/// How internal calls travel, and their bounds.
#[derive(Debug, Clone)]
pub struct RpcOptions {
    /// Multiplexed, pooled or short.
    pub strategy: Strategy,
    /// Deadline of a call (the server is told it).
    pub timeout: Duration,
    /// Calls in flight to one instance before more are refused at once.
    pub max_in_flight: usize,
    /// TLS on every connection (`[cluster.tls]`); `None`: plaintext.
    pub tls: Option<longlink_rpc::TlsClient>,
    /// Where the clients' latency histograms go: one set per peer role, on the process's
    /// metrics page.
    pub latency: RpcLatency,
}

impl RpcOptions {
    /// A client of one instance of `peer` (the role called: `"saver"`, `"room"`, …) at
    /// `addr`, recording into the histograms of `peer`.
    pub fn client(&self, peer: &'static str, addr: &str) -> longlink_rpc::Client {
        let builder = longlink_rpc::Client::builder(addr)
            .histograms(self.latency.peer(peer))
            .strategy(self.strategy)
            .max_in_flight(self.max_in_flight.max(1))
            .max_queued(self.max_in_flight.max(1))
            .max_queue_wait(self.timeout / 2)
            .default_timeout(self.timeout)
            // The TLS handshake is inside it too.
            .connect_timeout(Duration::from_millis(500).min(self.timeout))
            .heartbeat(Duration::from_secs(2), Duration::from_secs(2));
        match &self.tls {
            Some(tls) => builder.tls(tls.clone()).build(),
            None => builder.build(),
        }
    }

    /// Clients of every instance of `peer` in `addrs`, balanced (a call that fails without
    /// running goes to the next one); their histograms add up as one peer.
    pub fn balancer<A: AsRef<str>>(
        &self,
        peer: &'static str,
        addrs: impl IntoIterator<Item = A>,
    ) -> Balancer {
        let balancer = Balancer::new([]);
        balancer.update(addrs, |addr| self.client(peer, addr));
        balancer
    }
}

/// A [`PushError`] as a service answers it.
pub fn to_service_error(e: PushError) -> ServiceError {
    let did_nothing = !e.may_have_run();
    let error = match e {
        PushError::Invalid(m) => return ServiceError::new(status::INVALID, m).not_processed(),
        PushError::Storage(e) => {
            let retryable = e.is_retryable();
            let error = ServiceError::new(status::STORE, e.to_string());
            if retryable { error.retryable() } else { error }
        }
        PushError::Overloaded(o) => {
            ServiceError::new(status::OVERLOADED, o.to_string()).retryable()
        }
        PushError::Unavailable {
            service, detail, ..
        } => ServiceError::new(
            if service == "store" {
                status::STORE
            } else {
                status::UNAVAILABLE
            },
            format!("{service}: {detail}"),
        )
        .retryable(),
    };
    if did_nothing {
        error.not_processed()
    } else {
        error
    }
}

/// A failed call to `service` as a [`PushError`], keeping whether it may have run.
pub fn from_rpc_error(service: &'static str, e: RpcError) -> PushError {
    let may_have_run = e.may_have_run();
    match e {
        RpcError::Remote {
            status: status::INVALID,
            message,
            ..
        } => PushError::Invalid(message),
        RpcError::Remote {
            status: status::STORE,
            message,
            ..
        } => PushError::Unavailable {
            service: "store",
            detail: message,
            may_have_run,
        },
        RpcError::Remote { message, .. } => PushError::Unavailable {
            service,
            detail: message,
            may_have_run,
        },
        e => PushError::Unavailable {
            service,
            detail: e.to_string(),
            may_have_run,
        },
    }
}

/// Declares a service contract once: the trait the rest of the system uses (async, owned
/// arguments, `Result<_, PushError>`), its `longlink_rpc::service!` declaration, the
/// handler that serves any implementation (`Served<dyn Trait>`), and the client that is one
/// (`Remote<svc::Client>`).
///
/// A method marked `#[idempotent]` (running it twice does what running it once does) is
/// declared so in `service!` only: its calls are also retried after errors that say they may
/// have run, and hedged when the client's policy hedges. Say in its doc comment why it is.
///
/// ```
/// use longlink_push::remote::{Remote, Served};
/// longlink_push::contract! {
///     /// Counts things.
///     pub trait Counter: service counter_svc as "counter" {
///         /// Adds `n`; answers the new total (not idempotent: twice adds twice).
///         fn add(n: u64) -> u64;
///         /// The total: a read, retried even after it may have run, and hedged when
///         /// the client hedges.
///         #[idempotent]
///         fn total() -> u64;
///     }
/// }
/// #[derive(Debug)]
/// struct Local(std::sync::atomic::AtomicU64);
/// #[async_trait::async_trait]
/// impl Counter for Local {
///     async fn add(&self, n: u64) -> Result<u64, longlink_push::PushError> {
///         Ok(self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n)
///     }
///     async fn total(&self) -> Result<u64, longlink_push::PushError> {
///         Ok(self.0.load(std::sync::atomic::Ordering::Relaxed))
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = longlink_rpc::Server::builder().bind("127.0.0.1:0").await?;
/// let addr = server.local_addr().to_string();
/// let local: std::sync::Arc<dyn Counter> = std::sync::Arc::new(Local(Default::default()));
/// tokio::spawn(server.serve(counter_svc::Server::new(Served(local))));
/// let remote = Remote::new(counter_svc::Client::new(longlink_rpc::Client::new(addr)));
/// assert_eq!(remote.add(2).await?, 2); // the trait, over RPC
/// assert_eq!(remote.total().await?, 2);
/// assert!(counter_svc::methods::is_idempotent(counter_svc::methods::total));
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! contract {
    (
        $(#[$meta:meta])*
        pub trait $trait:ident : service $svc:ident as $label:literal {
            $($body:tt)*
        }
    ) => {
        $crate::__contract! {
            @parse [[$(#[$meta])*] $trait $svc $label] [] [] [] $($body)*
        }
    };
}

/// The parts of [`contract!`]: a muncher that reads each method's attributes one by one —
/// `#[idempotent]` goes to the `service!` declaration only (the trait has no such
/// attribute), the others everywhere — then the expansion. While a method is read,
/// `[$($attrs)*]` holds its attributes for the trait and `[$($all)*]` those for `service!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract {
    (@parse $head:tt [$($done:tt)*] [$($attrs:tt)*] [$($all:tt)*] #[idempotent] $($rest:tt)*) => {
        $crate::__contract! { @parse $head [$($done)*] [$($attrs)*] [$($all)* #[idempotent]] $($rest)* }
    };
    (@parse $head:tt [$($done:tt)*] [$($attrs:tt)*] [$($all:tt)*] #[$m:meta] $($rest:tt)*) => {
        $crate::__contract! { @parse $head [$($done)*] [$($attrs)* #[$m]] [$($all)* #[$m]] $($rest)* }
    };
    (@parse $head:tt [$($done:tt)*] [$($attrs:tt)*] [$($all:tt)*]
        fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $resp:ty ;
        $($rest:tt)*
    ) => {
        $crate::__contract! { @parse $head
            [$($done)* { [$($attrs)*] [$($all)*] $method [$($arg : $ty),*] [$resp] }] [] [] $($rest)* }
    };
    (@parse $head:tt [$($done:tt)*] [$($attrs:tt)*] [$($all:tt)*] $($rest:tt)+) => {
        ::std::compile_error!(::std::concat!(
            "contract!: expected a method `fn name(arg: Type, ...) -> Answer;`, found `",
            ::std::stringify!($($rest)+), "`"
        ));
    };
    (@parse [[$($meta:tt)*] $trait:ident $svc:ident $label:literal]
        [$({ [$($m:tt)*] [$($all:tt)*] $method:ident [$($arg:ident : $ty:ty),*] [$resp:ty] })*] [] []
    ) => {
        $($meta)*
        #[$crate::__private::async_trait]
        pub trait $trait: Send + Sync + ::std::fmt::Debug + 'static {
            $(
                $($m)*
                async fn $method(&self, $($arg: $ty),*) -> ::std::result::Result<$resp, $crate::PushError>;
            )*
        }

        $crate::__private::longlink_rpc::service! {
            #[doc = ::std::concat!("[`", ::std::stringify!($trait), "`] as an RPC service (the ", $label, ").")]
            pub mod $svc {
                $(
                    $($all)*
                    fn $method($($arg: $ty),*) -> $resp;
                )*
            }
        }

        impl $svc::Handler for $crate::remote::Served<dyn $trait> {
            $(
                async fn $method(&self, $($arg: $ty),*) -> ::std::result::Result<$resp, $crate::__private::longlink_rpc::ServiceError> {
                    self.0.$method($($arg),*).await.map_err($crate::remote::to_service_error)
                }
            )*
        }

        #[$crate::__private::async_trait]
        impl $trait for $crate::remote::Remote<$svc::Client> {
            $(
                async fn $method(&self, $($arg: $ty),*) -> ::std::result::Result<$resp, $crate::PushError> {
                    self.client
                        .$method($($arg),*)
                        .await
                        .map_err(|e| $crate::remote::from_rpc_error($label, e))
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::coordinator::coordinator_svc as coordinator;
    use crate::register::register_svc as register;
    use crate::rooms::room_svc as room;
    use crate::saver::saver_svc as saver;

    /// The contracts' `#[idempotent]` marks, pinned: changing one is a decision about
    /// what may run twice (the reasons are beside each method).
    #[test]
    fn only_methods_that_may_run_twice_are_marked_idempotent() {
        use register::methods as r;
        let marks = [
            (r::connect, true),
            (r::disconnect, true),
            (r::lookup, true),
            (r::bind, true),
            (r::unbind, true),
            (r::members, true),
            (r::counts, true),
            (r::epoch, true),
            (r::reap, false),
        ];
        for (id, idempotent) in marks {
            assert_eq!(r::is_idempotent(id), idempotent, "register {id}");
        }
        use saver::methods as s;
        let marks = [
            (s::store, false),
            (s::claim, false),
            (s::delivered, false),
            (s::ack, true),
            (s::expire, true),
            (s::pending, true),
            (s::status, true),
            (s::message_for, true),
            (s::sweep, true),
            (s::max_id, true),
        ];
        for (id, idempotent) in marks {
            assert_eq!(s::is_idempotent(id), idempotent, "saver {id}");
        }
        use room::methods as g;
        let marks = [
            (g::deliver, false),
            (g::broadcast, false),
            (g::users_in, true),
            (g::kick, false),
            (g::drain, true),
            (g::load, true),
        ];
        for (id, idempotent) in marks {
            assert_eq!(g::is_idempotent(id), idempotent, "room {id}");
        }
        use coordinator::methods as c;
        assert!(!c::is_idempotent(c::presence) && !c::is_idempotent(c::upstream));
    }
}
