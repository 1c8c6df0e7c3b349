//! W3C trace context (`traceparent`, `tracestate`) carried in request metadata.
//!
//! A call made while a [`TraceContext`] is current (inside a traced handler, or inside
//! [`TraceContext::scope`]) carries it to the server as a `traceparent` entry naming a new
//! span of the same trace; the server runs the handler inside a `tracing` span
//! `rpc.server` with `trace_id`, `span_id` and `parent_span_id` fields, with that span's
//! context current, so every call the handler makes continues the trace. A call made
//! outside any trace carries nothing and costs nothing: traces start where the
//! application starts them (an incoming HTTP `traceparent`, or [`TraceContext::new_root`]).
//!
//! ```
//! use longlink_rpc::trace::TraceContext;
//!
//! let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let parent = TraceContext::parse(header).unwrap();
//! assert_eq!(parent.to_traceparent(), header);
//! let child = parent.child();
//! assert_eq!(child.trace_id(), parent.trace_id());
//! assert_ne!(child.span_id(), parent.span_id());
//! assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! ```

use std::fmt;
use std::future::Future;

use longlink_codec::rpc::{MAX_METADATA_BYTES, Metadata};

/// The metadata key of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key of the W3C `tracestate` (carried through unchanged).
pub const TRACESTATE: &str = "tracestate";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Where a span sits in a trace: the trace's id, the span's id, whether the trace is
/// sampled, and the vendors' `tracestate` carried along.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    /// The span this one continues (0 for a root, or when unknown).
    parent_id: u64,
    sampled: bool,
    state: Option<std::sync::Arc<str>>,
}

impl TraceContext {
    /// A new trace (random ids, sampled).
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            parent_id: 0,
            sampled: true,
            state: None,
        }
    }

    /// Reads a `traceparent` value (version `00`, or a later version's first four fields,
    /// as the W3C spec asks). `None` for anything malformed, or all-zero ids.
    pub fn parse(traceparent: &str) -> Option<TraceContext> {
        let s = traceparent.trim();
        let bytes = s.as_bytes();
        if bytes.len() < 55 || (bytes.len() > 55 && bytes[55] != b'-') {
            return None;
        }
        let version = u8::from_str_radix(hex_field(&s[0..2])?, 16).ok()?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = u128::from_str_radix(hex_field(&s[3..35])?, 16).ok()?;
        let parent = u64::from_str_radix(hex_field(&s[36..52])?, 16).ok()?;
        let flags = u8::from_str_radix(hex_field(&s[53..55])?, 16).ok()?;
        if trace_id == 0 || parent == 0 {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id: parent,
            parent_id: 0,
            sampled: flags & 1 == 1,
            state: None,
        })
    }

    /// The context the metadata of a request carries, if any (a malformed `traceparent` is
    /// ignored, as the spec asks: the server starts no trace for it).
    pub fn from_metadata(metadata: &Metadata) -> Option<TraceContext> {
        if metadata.is_empty() {
            return None;
        }
        let mut cx = TraceContext::parse(metadata.get_str(TRACEPARENT)?)?;
        cx.state = metadata
            .get_str(TRACESTATE)
            .filter(|s| !s.is_empty())
            .map(Into::into);
        Some(cx)
    }

    /// A new span of the same trace, continuing this one.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: nonzero_u64(),
            parent_id: self.span_id,
            sampled: self.sampled,
            state: self.state.clone(),
        }
    }

    /// With this `tracestate` (the vendors' list, carried through unchanged).
    pub fn with_state(mut self, tracestate: &str) -> TraceContext {
        self.state = (!tracestate.is_empty()).then(|| tracestate.into());
        self
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// This span's id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The id of the span this one continues (16 hex digits), if known.
    pub fn parent_span_id(&self) -> Option<String> {
        (self.parent_id != 0).then(|| format!("{:016x}", self.parent_id))
    }

    /// The raw ids: trace, span, parent (0 when none).
    pub fn ids(&self) -> (u128, u64, u64) {
        (self.trace_id, self.span_id, self.parent_id)
    }

    /// Whether the trace is sampled (the `01` flag).
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The `tracestate`, if any.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// This span as a `traceparent` value (version `00`).
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// `metadata` with this span's `traceparent` (and `tracestate`) added.
    pub fn inject(&self, metadata: &Metadata) -> Metadata {
        let mut with = metadata
            .with(TRACEPARENT, self.to_traceparent())
            .unwrap_or_else(|_| metadata.clone());
        if let Some(state) = self.state() {
            // A tracestate that would not fit is dropped (the spec allows truncating it).
            if with.as_bytes().len() + state.len() + 16 < MAX_METADATA_BYTES {
                with = with.with(TRACESTATE, state).unwrap_or(with);
            }
        }
        with
    }

    /// The context current in this task: set by [`scope`](TraceContext::scope), and by the
    /// server around a traced handler.
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context current: the calls it makes continue this trace.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }

    /// The `tracing` span of a call this context names (the client's side).
    pub(crate) fn client_span(&self, method: u32) -> tracing::Span {
        tracing::info_span!(
            "rpc.client",
            rpc.method = method,
            trace_id = %self.trace_id(),
            span_id = %self.span_id(),
            parent_span_id = %self.parent_span_id().unwrap_or_default(),
        )
    }

    /// The `tracing` span a traced handler runs in (the server's side).
    pub(crate) fn server_span(&self, method: u32) -> tracing::Span {
        tracing::info_span!(
            "rpc.server",
            rpc.method = method,
            trace_id = %self.trace_id(),
            span_id = %self.span_id(),
            parent_span_id = %self.parent_span_id().unwrap_or_default(),
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.to_traceparent())
            .field("parent_span_id", &self.parent_span_id())
            .field("tracestate", &self.state)
            .finish()
    }
}

/// `s` when it is lowercase hex (the spec refuses uppercase).
fn hex_field(s: &str) -> Option<&str> {
    s.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some(s)
}

fn nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

fn nonzero_u128() -> u128 {
    fastrand::u128(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_bad_ones_are_refused() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let cx = TraceContext::parse(h).unwrap();
        assert!(!cx.is_sampled());
        assert_eq!(cx.to_traceparent(), h);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        // A later version may add fields after a dash.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(
            TraceContext::parse(v1).unwrap().span_id(),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn metadata_carries_the_span_and_the_state() {
        let cx = TraceContext::new_root().with_state("vendor=abc");
        let child = cx.child();
        let meta = child.inject(&Metadata::new());
        let read = TraceContext::from_metadata(&meta).unwrap();
        assert_eq!(read.trace_id(), cx.trace_id());
        assert_eq!(read.span_id(), child.span_id());
        assert_eq!(read.state(), Some("vendor=abc"));
        assert_eq!(child.parent_span_id(), Some(cx.span_id()));
    }

    #[tokio::test]
    async fn scope_makes_a_context_current_for_its_future_only() {
        assert!(TraceContext::current().is_none());
        let cx = TraceContext::new_root();
        let seen = cx.clone().scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(cx));
        assert!(TraceContext::current().is_none());
    }
}
