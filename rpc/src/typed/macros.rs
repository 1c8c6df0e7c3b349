//! The `service!` macro.

/// Declares a typed service: a module with a `Handler` trait (implement it), a `Client`
/// (typed methods over a [`Caller`](crate::typed::Caller): one target or a
/// [`Balancer`](crate::Balancer)) and a `Server` (a `tower::Service` to give
/// [`Server::serve`](crate::Server::serve)).
///
/// ```
/// longlink_rpc::service! {
///     /// Accounts.
///     pub mod accounts {
///         /// Moves `cents` from one account to another; answers the new balances.
///         fn transfer(from: u64, to: u64, cents: i64) -> (i64, i64);
///         /// Closes an account (no answer).
///         fn close(id: u64);
///     }
/// }
/// # fn main() {}
/// ```
///
/// Each method takes named arguments (any number, `serde` types) and answers one type (`()`
/// when the arrow is left out). On the wire the arguments travel as one postcard tuple, and
/// the method id is [`method_id`](crate::method_id)`("module.method")`, so reordering
/// methods changes nothing. The client's methods take the arguments by value and return
/// `Result<Answer, RpcError>`; the handler's return `Result<Answer, ServiceError>`. See the
/// [module documentation](crate::typed) for a server, a client, deadlines and balancing.
///
/// Types without argument names are refused with a message that says what to write
/// (``service!: the arguments of `put` need names ...``):
///
/// ```compile_fail
/// longlink_rpc::service! {
///     pub mod profiles {
///         fn put(u64, String) -> ();
///     }
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! service {
    (
        $(#[$meta:meta])*
        $vis:vis mod $name:ident {
            $($body:tt)*
        }
    ) => {
        $crate::__service! { @parse [$(#[$meta])*] [$vis] $name [] $($body)* }
    };
    ($($other:tt)*) => {
        ::std::compile_error!(
            "service! expects `pub mod name { fn method(arg: Type, ...) -> Answer; ... }`"
        );
    };
}

/// The parts of `service!`: a muncher that reads one method at a time (so a misuse gets
/// a message naming the method), then the expansion.
#[doc(hidden)]
#[macro_export]
macro_rules! __service {
    // A method with an answer type.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*]
        $(#[$m:meta])* fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $resp:ty ;
        $($rest:tt)*
    ) => {
        $crate::__service! { @parse $meta $vis $name
            [$($done)* { [$(#[$m])*] $method [$($arg : $ty),*] [$resp] }] $($rest)* }
    };
    // A method without one: it answers `()`.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*]
        $(#[$m:meta])* fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) ;
        $($rest:tt)*
    ) => {
        $crate::__service! { @parse $meta $vis $name
            [$($done)* { [$(#[$m])*] $method [$($arg : $ty),*] [()] }] $($rest)* }
    };
    // `fn put(u64, Profile)`: types without names.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*]
        $(#[$m:meta])* fn $method:ident ( $($args:tt)* ) $($rest:tt)*
    ) => {
        ::std::compile_error!(::std::concat!(
            "service!: the arguments of `", ::std::stringify!($method),
            "` need names, and the declaration ends with `;`: write `fn ",
            ::std::stringify!($method), "(id: u64, profile: Profile) -> Answer;` (found `(",
            ::std::stringify!($($args)*), ")`)"
        ));
    };
    // Anything else where a method should be.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] $($rest:tt)+) => {
        ::std::compile_error!(::std::concat!(
            "service!: expected a method `fn name(arg: Type, ...) -> Answer;`, found `",
            ::std::stringify!($($rest)+), "`"
        ));
    };
    // Every method read: the expansion.
    (@parse [$($meta:tt)*] [$vis:vis] $name:ident
        [$({ [$($m:tt)*] $method:ident [$($arg:ident : $ty:ty),*] [$resp:ty] })*]
    ) => {
        $($meta)*
        $vis mod $name {
            #![allow(dead_code, unused_imports, clippy::unused_unit)]
            use super::*;

            /// The method ids.
            #[allow(non_upper_case_globals)]
            pub mod methods {
                $(
                    #[doc = ::std::concat!("Id of `", ::std::stringify!($name), ".", ::std::stringify!($method), "`.")]
                    pub const $method: u32 = $crate::method_id(::std::concat!(::std::stringify!($name), ".", ::std::stringify!($method)));
                )*
            }

            /// Each method's id and name (`"module.method"`), for the latency histograms'
            /// `method` label; the client and the server name them when they are made.
            pub const METHOD_NAMES: &[(u32, &str)] = &[
                $( (methods::$method, ::std::concat!(::std::stringify!($name), ".", ::std::stringify!($method))), )*
            ];

            /// Implement this to serve the service.
            pub trait Handler: Send + Sync + 'static {
                $(
                    $($m)*
                    fn $method(&self, $($arg: $ty),*) -> impl ::std::future::Future<Output = ::std::result::Result<$resp, $crate::ServiceError>> + Send;
                )*
            }

            /// The typed client: one target or a balancer, and the next call's options.
            #[derive(Debug, Clone)]
            pub struct Client {
                caller: $crate::typed::Caller,
            }

            impl Client {
                /// Calls the service through `target`: a [`Client`]($crate::Client) or a
                /// [`Balancer`]($crate::Balancer).
                pub fn new(target: impl ::std::convert::Into<$crate::typed::Caller>) -> Client {
                    $crate::typed::__private::name_methods(METHOD_NAMES);
                    Client { caller: target.into() }
                }

                /// The same client, whose calls give up after `timeout` (the server is told
                /// the deadline).
                pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Client {
                    Client { caller: self.caller.with_timeout(timeout) }
                }

                /// The same client, whose calls give up at `deadline`.
                pub fn with_deadline(&self, deadline: ::std::time::Instant) -> Client {
                    Client { caller: self.caller.with_deadline(deadline) }
                }

                /// The same client, whose calls go to the instance that owns `key` (over a
                /// balancer).
                pub fn with_key(&self, key: impl ::std::convert::AsRef<[u8]>) -> Client {
                    Client { caller: self.caller.with_key(key) }
                }

                /// Where the calls go, and with which options.
                pub fn caller(&self) -> &$crate::typed::Caller {
                    &self.caller
                }

                $(
                    $($m)*
                    pub async fn $method(&self, $($arg: $ty),*) -> ::std::result::Result<$resp, $crate::RpcError> {
                        let body = $crate::typed::__private::encode(&($(&$arg,)*))?;
                        let answer = self.caller.call(methods::$method, body).await?;
                        $crate::typed::__private::decode_answer(&answer)
                    }
                )*
            }

            /// The server adapter: a `tower::Service` for [`Server::serve`]($crate::Server::serve).
            #[derive(Debug)]
            pub struct Server<T> {
                handler: ::std::sync::Arc<T>,
            }

            impl<T> ::std::clone::Clone for Server<T> {
                fn clone(&self) -> Self {
                    Server { handler: ::std::sync::Arc::clone(&self.handler) }
                }
            }

            impl<T: Handler> Server<T> {
                /// Serves `handler`.
                pub fn new(handler: T) -> Server<T> {
                    Server::from_arc(::std::sync::Arc::new(handler))
                }

                /// Serves a handler shared with the rest of the program.
                pub fn from_arc(handler: ::std::sync::Arc<T>) -> Server<T> {
                    $crate::typed::__private::name_methods(METHOD_NAMES);
                    Server { handler }
                }
            }

            impl<T: Handler> $crate::typed::__private::Service<$crate::Request> for Server<T> {
                type Response = $crate::Response;
                type Error = ::std::convert::Infallible;
                type Future = ::std::pin::Pin<::std::boxed::Box<dyn ::std::future::Future<Output = ::std::result::Result<$crate::Response, ::std::convert::Infallible>> + Send>>;

                fn poll_ready(&mut self, _: &mut ::std::task::Context<'_>) -> ::std::task::Poll<::std::result::Result<(), ::std::convert::Infallible>> {
                    ::std::task::Poll::Ready(Ok(()))
                }

                fn call(&mut self, request: $crate::Request) -> Self::Future {
                    let handler = ::std::sync::Arc::clone(&self.handler);
                    ::std::boxed::Box::pin(async move {
                        $(
                            if request.method == methods::$method {
                                return Ok($crate::typed::__private::handle(
                                    request,
                                    |($($arg,)*): ($($ty,)*)| async move { handler.$method($($arg),*).await },
                                ).await);
                            }
                        )*
                        Ok($crate::Response::error(
                            $crate::Status::UNKNOWN_METHOD,
                            ::std::format!("no method {} in {}", request.method, ::std::stringify!($name)),
                        ))
                    })
                }
            }
        }
    };
}
