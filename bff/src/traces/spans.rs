//! The spans bff makes besides each request's own, and the W3C trace context in and out. Each
//! constructor answers [`Span::none`] while traces are off: nothing is allocated, recorded or
//! looked up but one flag.
//!
//! - In: a request's `traceparent` (and `tracestate`) is its span's parent only when the peer is
//!   a trusted proxy (`trusted_proxies`, as for `X-Forwarded-For`); anyone else's is ignored,
//!   and the request starts a trace of its own.
//! - Out: the upstream gets a `traceparent` naming the gateway's upstream span as the parent
//!   (the browser's own is replaced).

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::client_addr::ClientAddr;

/// A Redis command (or pipeline, or script) sent; `command` is asked only while traces are on.
pub fn redis(command: impl FnOnce() -> String) -> Span {
    if !super::enabled() {
        return Span::none();
    }
    let command = command();
    tracing::info_span!(
        target: "bff::traces",
        "redis",
        otel.name = %format_args!("redis {command}"),
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = %command,
    )
}

/// The name of a Redis command (`GET`, `EVALSHA`), for [`redis`].
pub fn command_name(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "command".into(),
    }
}

/// A call to the identity provider: `discovery`, `jwks`, `token` (code or refresh), `revocation`.
pub fn issuer(call: &'static str) -> Span {
    if !super::enabled() {
        return Span::none();
    }
    tracing::info_span!(target: "bff::traces", "issuer", otel.name = %format_args!("issuer {call}"), otel.kind = "client", oidc.call = call)
}

/// The proxied request to an upstream of `route`.
pub fn upstream(method: &Method, route: &str) -> Span {
    if !super::enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "bff::traces",
        "upstream",
        otel.name = %format_args!("upstream {method}"),
        otel.kind = "client",
        http.request.method = %method,
        bff.route = route,
    )
}

/// A token refresh (one per session across the fleet; it runs as a task of its own).
pub fn refresh() -> Span {
    if !super::enabled() {
        return Span::none();
    }
    tracing::info_span!(target: "bff::traces", "token refresh")
}

/// Names `span` (the request's) for its trace, and makes the caller's trace its parent when the
/// caller is a trusted proxy. Called as the span is made, before it is entered.
pub fn adopt<B>(span: &Span, request: &Request<B>) {
    if !super::enabled() {
        return;
    }
    let Some(scope) = super::SCOPE.get() else { return };
    let path = request.uri().path();
    let own = matches!(path, "/health" | "/ready" | "/metrics" | "/ops/fingerprint")
        || path.strip_prefix(scope.account_prefix.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/'));
    // Proxied paths carry ids and are as many as the upstreams have: not in a span's name.
    match own {
        true => span.record("otel.name", format_args!("{} {path}", request.method())),
        false => span.record("otel.name", format_args!("{} proxied", request.method())),
    };
    span.record("otel.kind", "server");
    let peer = request.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0.0.ip());
    if !peer.is_some_and(|ip| scope.trusts(ip)) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Puts `span`'s trace context into `headers` (an outgoing request's) in place of any there.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_none() {
        return;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}
