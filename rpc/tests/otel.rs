//! Feature `opentelemetry`: with `tracing-opentelemetry`'s layer installed, a call made
//! inside an OpenTelemetry span and the handler that serves it are exported as spans of one
//! trace, the server's span a child of the client's, and a handler's onward call continues
//! it. The exporter records what it is sent, standing in for a collector.
#![cfg(feature = "opentelemetry")]

use std::convert::Infallible;

use longlink_rpc::{Client, Request, Response, Server};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use parking_lot::Mutex;
use std::sync::Arc;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

/// A collector stand-in: keeps every span exported to it.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collector {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().append(&mut batch);
        Ok(())
    }
}

async fn server(onward: Option<Client>) -> String {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().to_string();
    tokio::spawn(server.serve(tower::service_fn(move |req: Request| {
        let onward = onward.clone();
        async move {
            if let Some(next) = onward {
                next.call(1, "onward").await.unwrap();
            }
            Ok::<_, Infallible>(Response::ok(req.body))
        }
    })));
    addr
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

// Current-thread runtime: the subscriber set for this thread sees the server's tasks too.
#[tokio::test]
async fn a_call_and_its_handlers_are_exported_as_one_trace() {
    let exporter = Collector::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let back = server(None).await;
    let front = server(Some(Client::new(back))).await;
    let client = Client::new(front);
    client
        .call(1, "hi")
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    // Outside any span: no trace, nothing exported for it.
    client.call(1, "untraced").await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.0.lock().clone();
    let root = named(&spans, "request");
    assert_eq!(root.len(), 1, "{spans:#?}");
    let trace = root[0].span_context.trace_id();
    let clients = named(&spans, "rpc.client");
    let servers = named(&spans, "rpc.server");
    assert_eq!(clients.len(), 2, "the call and the onward call: {spans:#?}");
    assert_eq!(servers.len(), 2, "front and back handlers: {spans:#?}");
    for span in clients.iter().chain(&servers) {
        assert_eq!(span.span_context.trace_id(), trace, "one trace");
    }
    // request → rpc.client → rpc.server (front) → rpc.client → rpc.server (back)
    let parent_of = |s: &SpanData| {
        spans
            .iter()
            .find(|p| p.span_context.span_id() == s.parent_span_id)
            .map(|p| p.name.to_string())
            .unwrap_or_else(|| "?".into())
    };
    let first_call = clients
        .iter()
        .find(|c| c.parent_span_id == root[0].span_context.span_id())
        .expect("the call is a child of the request span");
    let front_server = servers
        .iter()
        .find(|s| s.parent_span_id == first_call.span_context.span_id())
        .expect("the front handler's parent is the call that reached it");
    let onward = clients
        .iter()
        .find(|c| c.parent_span_id == front_server.span_context.span_id())
        .expect("the onward call is a child of the front handler");
    let back_server = servers
        .iter()
        .find(|s| s.parent_span_id == onward.span_context.span_id())
        .expect("the back handler's parent is the onward call");
    assert_eq!(parent_of(back_server), "rpc.client");
}
