//! A traced handler runs inside an `rpc.server` span carrying the trace id. Alone in its
//! test binary: `tracing` caches each callsite's interest per process, and a test that hit
//! the callsite first without a subscriber would hide the span from this one.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use longlink_rpc::trace::TraceContext;
use longlink_rpc::{Client, Request, Response, Server};
use parking_lot::Mutex;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_traced_handler_logs_inside_an_rpc_server_span_with_the_trace_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Current-thread test runtime: the server's tasks run on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();
    tokio::spawn(server.serve(tower::service_fn(|req: Request| async move {
        tracing::info!("handling");
        Ok::<_, Infallible>(Response::ok(req.body))
    })));
    let root = TraceContext::new_root();
    root.clone()
        .scope(Client::new(addr).call(1, "x"))
        .await
        .unwrap();
    let text = String::from_utf8(captured.0.lock().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("handling"))
        .unwrap_or_else(|| panic!("no handler log in {text}"));
    assert!(line.contains("rpc.server"), "{line}");
    assert!(line.contains(&root.trace_id()), "{line}");
}
