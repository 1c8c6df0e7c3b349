//! Typed services: declare the methods once with [`service!`](crate::service), get a
//! handler trait, a typed client and a server adapter. Arguments and answers are serde
//! types, encoded with postcard.
//!
//! ```
//! use std::time::Duration;
//! use longlink_rpc::{Balancer, Client, ServiceError};
//!
//! longlink_rpc::service! {
//!     /// Profiles by id.
//!     pub mod profiles {
//!         /// Stores a profile; answers the previous name.
//!         fn put(id: u64, name: String) -> Option<String>;
//!         /// A profile's name (a read: retried even after it may have run).
//!         #[idempotent]
//!         fn get(id: u64) -> Option<String>;
//!         /// How many profiles there are (no arguments).
//!         #[idempotent]
//!         fn count() -> u64;
//!     }
//! }
//!
//! #[derive(Default)]
//! struct Store(std::sync::Mutex<std::collections::HashMap<u64, String>>);
//!
//! impl profiles::Handler for Store {
//!     async fn put(&self, id: u64, name: String) -> Result<Option<String>, ServiceError> {
//!         if name.is_empty() {
//!             // The handler did nothing: the caller sees an error that did not run.
//!             return Err(ServiceError::new(1400, "empty name").not_processed());
//!         }
//!         // Any std error converts with `?` (it becomes an INTERNAL status).
//!         let _check: u8 = u8::try_from(id % 256)?;
//!         Ok(self.0.lock().unwrap().insert(id, name))
//!     }
//!     async fn get(&self, id: u64) -> Result<Option<String>, ServiceError> {
//!         Ok(self.0.lock().unwrap().get(&id).cloned())
//!     }
//!     async fn count(&self) -> Result<u64, ServiceError> {
//!         Ok(self.0.lock().unwrap().len() as u64)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = longlink_rpc::Server::builder().bind("127.0.0.1:0").await?;
//! let addr = server.local_addr().to_string();
//! tokio::spawn(server.serve(profiles::Server::new(Store::default())));
//!
//! // One target ...
//! let client = profiles::Client::new(Client::new(&addr));
//! assert_eq!(client.put(7, "ada".into()).await?, None);
//! // ... a per-call deadline (the server is told it, and drops the call once it passes) ...
//! assert_eq!(client.with_timeout(Duration::from_millis(500)).get(7).await?, Some("ada".into()));
//! let err = client.put(8, String::new()).await.unwrap_err();
//! assert!(!err.may_have_run());
//! // ... or several instances: by key (the same key reaches the same instance), or the
//! // less loaded of two; a call that provably did not run moves to the next instance.
//! let many = profiles::Client::new(Balancer::from_addrs([addr.clone()], |a| Client::new(a)));
//! assert_eq!(many.with_key(7u64.to_be_bytes()).get(7).await?, Some("ada".into()));
//! assert_eq!(many.count().await?, 1);
//! # Ok(()) }
//! ```
//!
//! # Evolving a service
//!
//! postcard is not self-describing: the bytes carry no field names or types, only values in
//! declaration order. What callers and servers built from different versions can still
//! agree on:
//!
//! - **Adding a method** is safe: method ids come from `"module.method"`, and an old server
//!   answers a new method with `UNKNOWN_METHOD` (the call did not run).
//! - **Removing a method** is safe for callers that stopped calling it.
//! - **Reordering or renaming arguments** of the same types keeps the bytes; renaming the
//!   method or module changes its id (a new method).
//! - **Adding a field at the end of a struct** is *not* safe by itself: an old reader fails
//!   on the extra bytes, a new reader on the missing ones. Add a new method (`put_v2`), or
//!   roll the servers first with `#[serde(default)]` on the field and the writers after.
//! - **Changing a type** (`u32` → `u64`, a `String` → an enum) is a new method.
//!
//! A mismatch is never silent: it fails as `BAD_REQUEST` on the server or a
//! `ProtocolMismatch` on the client.

mod caller;
mod error;
mod macros;

pub use self::caller::Caller;
pub use self::error::ServiceError;

/// What the `service!` macro expands to needs, re-exported so callers need no extra
/// dependencies.
#[doc(hidden)]
pub mod __private {
    pub use bytes::Bytes;
    pub use postcard;
    pub use tower_service::Service;

    use crate::typed::Caller;
    use crate::{Request, Response, RpcError, ServiceError, Status};

    /// Names a service's methods for the latency histograms (unless the program named
    /// them otherwise).
    pub fn name_methods(names: &[(u32, &'static str)]) {
        crate::metrics::name_methods_if_unnamed(names);
    }

    pub async fn call(
        caller: &Caller,
        method: u32,
        body: Bytes,
        idempotent: bool,
    ) -> Result<Bytes, RpcError> {
        caller.call_as(method, body, idempotent).await
    }

    pub fn encode<T: serde::Serialize>(value: &T) -> Result<Bytes, RpcError> {
        exact(value).map_err(|e| RpcError::ProtocolMismatch {
            detail: format!("cannot encode: {e}"),
        })
    }

    /// `value` in postcard, in one allocation of exactly its size (`to_allocvec` grows its
    /// `Vec` past the first capacity for any body over a few bytes: a `realloc` per call).
    /// Sizing first walks the value once more, which is cheap next to copying memory.
    fn exact<T: serde::Serialize>(value: &T) -> postcard::Result<Bytes> {
        let size = postcard::experimental::serialized_size(value)?;
        postcard::to_extend(value, Vec::with_capacity(size)).map(Bytes::from)
    }

    pub fn decode_answer<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
        postcard::from_bytes(bytes).map_err(|e| RpcError::ProtocolMismatch {
            detail: format!("cannot decode the answer: {e}"),
        })
    }

    pub async fn handle<Args, Resp, F>(request: Request, run: impl FnOnce(Args) -> F) -> Response
    where
        Args: serde::de::DeserializeOwned,
        Resp: serde::Serialize,
        F: Future<Output = Result<Resp, ServiceError>>,
    {
        let args = match postcard::from_bytes::<Args>(&request.body) {
            Ok(args) => args,
            Err(e) => {
                return Response::error(
                    Status::BAD_REQUEST,
                    format!("cannot decode the request: {e}"),
                );
            }
        };
        match run(args).await {
            Ok(resp) => match exact(&resp) {
                Ok(body) => Response::ok(body),
                Err(e) => {
                    Response::error(Status::INTERNAL, format!("cannot encode the answer: {e}"))
                }
            },
            Err(e) => e.into_response(),
        }
    }
}
