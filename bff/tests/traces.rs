//! Traces: real `bff` processes exporting over OTLP/HTTP (protobuf) to a receiver in this test,
//! which decodes each export with the OpenTelemetry protocol's own types. A user logs in, calls
//! `me` and an API whose access token is due for a refresh; the spans arrive with the right
//! parent-child links: the requests under the trace of the caller's `traceparent` (the caller is a
//! trusted proxy), Redis commands and issuer calls under the requests, the upstream call under
//! the API request and the upstream's own `traceparent` naming it. A node that does not trust
//! the caller starts a trace of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::cluster::{BackendKind, Cluster, ClusterSpec, NodeSettings};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One span as received.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP receiver on a free port: every span of every export, decoded.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                let mut kept = kept.lock().unwrap();
                for resource in export.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .map(|a| text(a.value.as_ref()))
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        kept.push(Received {
                            service: service.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            name: span.name,
                            kind: span.kind,
                            attributes: span
                                .attributes
                                .iter()
                                .map(|a| (a.key.clone(), text(a.value.as_ref())))
                                .collect(),
                        });
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// `(trace id, parent span id)` of a `traceparent`.
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    (fields[1].to_owned(), fields[2].to_owned())
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// Waits until a span matching `what` has arrived, and answers it.
async fn span(spans: &Spans, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = spans.lock().unwrap().iter().find(|s| matches(s)).cloned() {
            return found;
        }
        assert!(Instant::now() < deadline, "no span {what} among: {:#?}", spans.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_login_me_api_and_refresh_arrive_linked_under_a_trusted_callers_trace() {
    let (collector, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut node_settings = BTreeMap::new();
    // node-2 trusts no proxy on this machine: a caller's traceparent is not its parent.
    node_settings.insert(
        2,
        NodeSettings {
            env: [("BFF_TRUSTED_PROXIES".to_owned(), "10.0.0.0/8".to_owned())].into(),
            ..Default::default()
        },
    );
    let spec = ClusterSpec {
        nodes: 2,
        backend: BackendKind::Process,
        api_upstream: true,
        // Shorter than the refresh skew (30 s): every API call refreshes the token first.
        access_token_lifetime_secs: Some(10),
        bff_env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.clone()),
            ("OTEL_SERVICE_NAME".into(), "bff-traces-test".into()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
            ("BFF_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
        ],
        node_settings,
        run_dir: Some(dir.path().join("run")),
        ..Default::default()
    };
    let mut cluster = Cluster::start(spec, &|_| {}).await.expect("a cluster exporting traces");
    let node_1 = cluster.node_url(0).unwrap();
    let node_2 = cluster.node_url(1).unwrap();
    let user = cluster.user(Some("tina"));
    let trace = user.trace_id();

    let login = user.login_pinned(&node_1).await.unwrap();
    assert_eq!(login.status, 302, "{}", login.body);
    let callback_sent = parts(login.traceparent.as_deref().unwrap());
    let me = user.me(&node_1).await.unwrap();
    assert_eq!(me.status, 200, "{}", me.body);
    let me_sent = parts(me.traceparent.as_deref().unwrap());
    let api = user.api(&format!("{node_1}/api/hello")).await.unwrap();
    assert_eq!(api.status, 200, "{}", api.body);
    let api_sent = parts(api.traceparent.as_deref().unwrap());
    let upstream_got: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    let upstream_got = parts(upstream_got["traceparent"].as_str().expect("the upstream got a traceparent"));
    let untrusted = user.me(&node_2).await.unwrap();
    assert_eq!(untrusted.status, 200, "{}", untrusted.body);

    // The requests: server spans in the caller's trace, each the child of the caller's span.
    let request = |path: &'static str, sent: (String, String)| {
        let trace = trace.clone();
        move |s: &Received| {
            s.kind == SERVER
                && s.attributes.get("path").map(String::as_str) == Some(path)
                && s.trace_id == trace
                && s.parent == sent.1
                && s.trace_id == sent.0
        }
    };
    let callback = span(&spans, "login callback", request("/account/login/callback", callback_sent)).await;
    assert_eq!(callback.name, "GET /account/login/callback");
    assert_eq!(callback.service, "bff-traces-test");
    let login_start = span(&spans, "login", |s| {
        s.kind == SERVER
            && s.trace_id == trace
            && s.attributes.get("path").map(String::as_str) == Some("/account/login")
    })
    .await;
    assert_eq!(login_start.name, "GET /account/login");
    let me_span = span(&spans, "me", request("/account/me", me_sent)).await;
    assert_eq!(me_span.name, "GET /account/me");
    let api_span = span(&spans, "API call", request("/api/hello", api_sent)).await;
    assert_eq!(api_span.name, "GET proxied", "a proxied path is not in a span's name");

    // Their children: the code exchange and Redis under the callback.
    let child_of = |parent: &Received, name: &'static str| {
        let (trace, id) = (parent.trace_id.clone(), parent.span_id.clone());
        move |s: &Received| s.trace_id == trace && s.parent == id && s.name.starts_with(name)
    };
    let exchange = span(&spans, "token exchange under the callback", child_of(&callback, "issuer token")).await;
    assert_eq!(exchange.kind, CLIENT);
    let write = span(&spans, "a Redis command under the callback", child_of(&callback, "redis ")).await;
    assert_eq!(write.attributes.get("db.system.name").map(String::as_str), Some("redis"));

    // The API call: the refresh (its token request under it) and the upstream call.
    let refresh = span(&spans, "refresh under the API call", child_of(&api_span, "token refresh")).await;
    span(&spans, "refresh token request", child_of(&refresh, "issuer token")).await;
    let upstream = span(&spans, "upstream call under the API call", child_of(&api_span, "upstream GET")).await;
    assert_eq!(upstream.kind, CLIENT);
    assert_eq!(upstream_got, (trace.clone(), upstream.span_id.clone()), "the upstream's parent is the gateway's span");

    // node-2 does not trust this caller: a trace of its own, no parent.
    let own = span(&spans, "me on the untrusting node", |s| {
        s.kind == SERVER
            && s.attributes.get("path").map(String::as_str) == Some("/account/me")
            && s.trace_id != trace
            && s.parent.is_empty()
    })
    .await;
    assert_eq!(own.name, "GET /account/me");
    cluster.teardown().await.unwrap();
}
