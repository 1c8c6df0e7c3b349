//! Typed services: declare the methods once, get a handler trait, a typed client and a
//! server adapter. Requests and answers are serde types, encoded with postcard.
//!
//! ```
//! longlink_rpc::service! {
//!     /// Says things back.
//!     pub mod echo {
//!         /// The same text.
//!         fn echo(String) -> String;
//!         /// The sum.
//!         fn add((i32, i32)) -> i32;
//!     }
//! }
//!
//! struct Echoer;
//!
//! impl echo::Handler for Echoer {
//!     async fn echo(&self, text: String) -> Result<String, longlink_rpc::ServiceError> {
//!         Ok(text)
//!     }
//!     async fn add(&self, (a, b): (i32, i32)) -> Result<i32, longlink_rpc::ServiceError> {
//!         a.checked_add(b).ok_or_else(|| longlink_rpc::ServiceError::new(1001, "overflow"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = longlink_rpc::Server::builder().bind("127.0.0.1:0").await?;
//! let addr = server.local_addr();
//! tokio::spawn(server.serve(echo::Server::new(Echoer)));
//!
//! let client = echo::Client::new(longlink_rpc::Client::new(addr.to_string()));
//! assert_eq!(client.echo("hi".to_owned()).await?, "hi");
//! assert_eq!(client.add((2, 3)).await?, 5);
//! assert!(matches!(client.add((i32::MAX, 1)).await, Err(longlink_rpc::RpcError::Remote { status: 1001, .. })));
//! # Ok(()) }
//! ```

use std::fmt;

/// An error a typed handler returns: a status (1000 and up) and a message. The caller sees
/// it as [`RpcError::Remote`](crate::RpcError::Remote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The status code (values below 1000 are the protocol's; use 1000 and up).
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl ServiceError {
    /// An application error.
    pub fn new(status: u16, message: impl Into<String>) -> ServiceError {
        ServiceError {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ServiceError {}

/// What the `service!` macro expands to needs, re-exported so callers need no extra
/// dependencies.
#[doc(hidden)]
pub mod __private {
    pub use bytes::Bytes;
    pub use postcard;
    pub use tower_service::Service;

    use crate::{Request, Response, RpcError, ServiceError, Status};

    pub fn encode<T: serde::Serialize>(value: &T) -> Result<Bytes, RpcError> {
        postcard::to_allocvec(value)
            .map(Bytes::from)
            .map_err(|e| RpcError::ProtocolMismatch {
                detail: format!("cannot encode: {e}"),
            })
    }

    pub fn decode_answer<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
        postcard::from_bytes(bytes).map_err(|e| RpcError::ProtocolMismatch {
            detail: format!("cannot decode the answer: {e}"),
        })
    }

    pub async fn handle<Req, Resp, F>(request: Request, run: impl FnOnce(Req) -> F) -> Response
    where
        Req: serde::de::DeserializeOwned,
        Resp: serde::Serialize,
        F: Future<Output = Result<Resp, ServiceError>>,
    {
        let req = match postcard::from_bytes::<Req>(&request.body) {
            Ok(req) => req,
            Err(e) => {
                return Response::error(
                    Status::BAD_REQUEST,
                    format!("cannot decode the request: {e}"),
                );
            }
        };
        match run(req).await {
            Ok(resp) => match postcard::to_allocvec(&resp) {
                Ok(body) => Response::ok(body),
                Err(e) => {
                    Response::error(Status::INTERNAL, format!("cannot encode the answer: {e}"))
                }
            },
            Err(e) => Response::error(Status(e.status), e.message),
        }
    }
}

/// Declares a typed service: a module with a `Handler` trait (implement it), a `Client`
/// (typed methods over a [`Client`](crate::Client)) and a `Server` (a `tower::Service` to
/// give [`Server::serve`](crate::Server::serve)). Method ids are derived from
/// `"module.method"` with [`method_id`](crate::method_id), so reordering methods changes
/// nothing on the wire. See the [module documentation](crate::typed) for an example.
#[macro_export]
macro_rules! service {
    (
        $(#[$meta:meta])*
        $vis:vis mod $name:ident {
            $(
                $(#[$method_meta:meta])*
                fn $method:ident($req:ty) -> $resp:ty;
            )*
        }
    ) => {
        $(#[$meta])*
        $vis mod $name {
            #![allow(dead_code, unused_imports)]
            use super::*;

            /// The method ids.
            #[allow(non_upper_case_globals)]
            pub mod methods {
                $(
                    #[doc = concat!("Id of `", stringify!($name), ".", stringify!($method), "`.")]
                    pub const $method: u32 = $crate::method_id(concat!(stringify!($name), ".", stringify!($method)));
                )*
            }

            /// Implement this to serve the service.
            pub trait Handler: Send + Sync + 'static {
                $(
                    $(#[$method_meta])*
                    fn $method(&self, req: $req) -> impl ::std::future::Future<Output = ::std::result::Result<$resp, $crate::ServiceError>> + Send;
                )*
            }

            /// The typed client.
            #[derive(Debug, Clone)]
            pub struct Client {
                inner: $crate::Client,
            }

            impl Client {
                /// Calls the service through `client`.
                pub fn new(client: $crate::Client) -> Client {
                    Client { inner: client }
                }

                /// The untyped client underneath.
                pub fn inner(&self) -> &$crate::Client {
                    &self.inner
                }

                $(
                    $(#[$method_meta])*
                    pub async fn $method(&self, req: $req) -> ::std::result::Result<$resp, $crate::RpcError> {
                        let body = $crate::typed::__private::encode(&req)?;
                        let answer = self.inner.call(methods::$method, body).await?;
                        $crate::typed::__private::decode_answer(&answer)
                    }
                )*
            }

            /// The server adapter: a `tower::Service` for [`Server::serve`]($crate::Server::serve).
            #[derive(Debug)]
            pub struct Server<T> {
                handler: ::std::sync::Arc<T>,
            }

            impl<T> Clone for Server<T> {
                fn clone(&self) -> Self {
                    Server { handler: ::std::sync::Arc::clone(&self.handler) }
                }
            }

            impl<T: Handler> Server<T> {
                /// Serves `handler`.
                pub fn new(handler: T) -> Server<T> {
                    Server { handler: ::std::sync::Arc::new(handler) }
                }
            }

            impl<T: Handler> $crate::typed::__private::Service<$crate::Request> for Server<T> {
                type Response = $crate::Response;
                type Error = ::std::convert::Infallible;
                type Future = ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ::std::result::Result<$crate::Response, ::std::convert::Infallible>> + Send>>;

                fn poll_ready(&mut self, _: &mut ::std::task::Context<'_>) -> ::std::task::Poll<::std::result::Result<(), ::std::convert::Infallible>> {
                    ::std::task::Poll::Ready(Ok(()))
                }

                fn call(&mut self, request: $crate::Request) -> Self::Future {
                    let handler = ::std::sync::Arc::clone(&self.handler);
                    Box::pin(async move {
                        $(
                            if request.method == methods::$method {
                                return Ok($crate::typed::__private::handle(request, |req: $req| async move { handler.$method(req).await }).await);
                            }
                        )*
                        Ok($crate::Response::error($crate::Status::UNKNOWN_METHOD, format!("no method {} in {}", request.method, stringify!($name))))
                    })
                }
            }
        }
    };
}
