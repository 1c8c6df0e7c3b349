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
///         /// An account's balance: a read, so running it twice does no harm.
///         #[idempotent]
///         fn balance(id: u64) -> i64;
///         /// Closes an account (no answer). Closing a closed account changes nothing.
///         #[idempotent]
///         fn close(id: u64);
///     }
/// }
/// fn main() {
///     assert!(accounts::methods::is_idempotent(accounts::methods::balance));
///     assert!(!accounts::methods::is_idempotent(accounts::methods::transfer));
/// }
/// ```
///
/// **`#[idempotent]`** (among a method's attributes, in any order) says that running the
/// method twice has the same effect as running it once: a read, a put of a whole value, a
/// delete, an ACK of ids. Every call is retried when its error proves it did not run; an
/// idempotent one is also retried after errors that say it *may* have run (the connection
/// broke after the request was written, the handler failed with a retryable error) and is
/// hedged when the client's [`RetryPolicy`](crate::RetryPolicy) hedges. Leave it off a
/// method that adds, sends or counts: a retry of `transfer` after a lost connection could
/// move the money twice. `methods::is_idempotent(id)` answers for each method id.
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
///
/// and so is an attribute with no method after it
/// (``service!: `#[idempotent]` at the end, with no method after it``):
///
/// ```compile_fail
/// longlink_rpc::service! {
///     pub mod profiles {
///         fn get(id: u64) -> String;
///         #[idempotent]
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
        $crate::__service! { @parse [$(#[$meta])*] [$vis] $name [] [] [false] $($body)* }
    };
    ($($other:tt)*) => {
        ::std::compile_error!(
            "service! expects `pub mod name { fn method(arg: Type, ...) -> Answer; ... }`"
        );
    };
}

/// The parts of `service!`: a muncher that reads one method at a time — its attributes
/// one by one (taking `#[idempotent]` out), then its signature — so a misuse gets a message
/// naming the method; then the expansion. While a method is read, `[$($attrs)*]` holds the
/// attributes kept so far and `[$idem]` whether it was marked idempotent.
#[doc(hidden)]
#[macro_export]
macro_rules! __service {
    // `#[idempotent]`: ours, not passed on.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)*] [$idem:tt]
        #[idempotent] $($rest:tt)*
    ) => {
        $crate::__service! { @parse $meta $vis $name [$($done)*] [$($attrs)*] [true] $($rest)* }
    };
    // Any other attribute (doc comments included) goes on the generated methods.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)*] [$idem:tt]
        #[$m:meta] $($rest:tt)*
    ) => {
        $crate::__service! { @parse $meta $vis $name [$($done)*] [$($attrs)* #[$m]] [$idem] $($rest)* }
    };
    // A method with an answer type.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)*] [$idem:tt]
        fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $resp:ty ;
        $($rest:tt)*
    ) => {
        $crate::__service! { @parse $meta $vis $name
            [$($done)* { [$($attrs)*] [$idem] $method [$($arg : $ty),*] [$resp] }] [] [false] $($rest)* }
    };
    // A method without one: it answers `()`.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)*] [$idem:tt]
        fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) ;
        $($rest:tt)*
    ) => {
        $crate::__service! { @parse $meta $vis $name
            [$($done)* { [$($attrs)*] [$idem] $method [$($arg : $ty),*] [()] }] [] [false] $($rest)* }
    };
    // `fn put(u64, Profile)`: types without names.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)*] [$idem:tt]
        fn $method:ident ( $($args:tt)* ) $($rest:tt)*
    ) => {
        ::std::compile_error!(::std::concat!(
            "service!: the arguments of `", ::std::stringify!($method),
            "` need names, and the declaration ends with `;`: write `fn ",
            ::std::stringify!($method), "(id: u64, profile: Profile) -> Answer;` (found `(",
            ::std::stringify!($($args)*), ")`)"
        ));
    };
    // Anything else where a method should be.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)*] [$idem:tt] $($rest:tt)+) => {
        ::std::compile_error!(::std::concat!(
            "service!: expected a method `fn name(arg: Type, ...) -> Answer;`, found `",
            ::std::stringify!($($rest)+), "`"
        ));
    };
    // Attributes left with no method after them.
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [$($attrs:tt)+] [$idem:tt]) => {
        ::std::compile_error!("service!: attributes at the end, with no method after them");
    };
    (@parse $meta:tt $vis:tt $name:ident [$($done:tt)*] [] [true]) => {
        ::std::compile_error!("service!: `#[idempotent]` at the end, with no method after it");
    };
    // Every method read: the expansion.
    (@parse [$($meta:tt)*] [$vis:vis] $name:ident
        [$({ [$($m:tt)*] [$idem:tt] $method:ident [$($arg:ident : $ty:ty),*] [$resp:ty] })*] [] [false]
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

                /// Whether the method with this id was declared `#[idempotent]`.
                pub const fn is_idempotent(method: u32) -> bool {
                    $(
                        if method == $method {
                            return $idem;
                        }
                    )*
                    false
                }
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
                    #[doc = $crate::__service_idempotent_doc!($idem)]
                    pub async fn $method(&self, $($arg: $ty),*) -> ::std::result::Result<$resp, $crate::RpcError> {
                        let body = $crate::typed::__private::encode(&($(&$arg,)*))?;
                        let answer = $crate::typed::__private::call(&self.caller, methods::$method, body, $idem).await?;
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

/// The line a client method's documentation gains when it is idempotent.
#[doc(hidden)]
#[macro_export]
macro_rules! __service_idempotent_doc {
    (true) => {
        "\n\nIdempotent: also retried after errors that say it may have run, and hedged when \
         the client's `RetryPolicy` hedges."
    };
    (false) => {
        ""
    };
}
