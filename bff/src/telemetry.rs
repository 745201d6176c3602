//! Logs and request ids. Every request gets an `x-request-id` that appears in its log span, its
//! response and the request an upstream receives. A caller's own id is kept only when it is one
//! id of a safe shape ([`acceptable_request_id`]): anything else (long, several, with spaces,
//! quotes or control bytes) is replaced by a new one before it reaches a log line or an upstream. Only the method and path are logged: never a
//! query string (it carries codes and states), a cookie, a token or a claim.

use axum::Router;
use axum::http::{HeaderName, Request};
use rand::Rng;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, MakeClassifier, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass,
};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber (text or JSON on stderr). Colours only on a terminal, and never
/// with `NO_COLOR` set (<https://no-color.org>): a log file or a log collector gets plain text.
pub fn init(format: LogFormat, filter: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // `NO_COLOR` is a convention of every terminal program, not a gateway setting: read here.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs the global subscriber as [`init`] does (the same logs, filtered by `filter`), plus the
/// layer that exports bff's spans over OTLP ([`crate::traces`]); the export runs until
/// [`crate::traces::Exporting::shutdown`].
pub fn init_exporting(
    format: LogFormat,
    filter: &str,
    settings: &crate::traces::TraceSettings,
    config: &crate::config::Config,
) -> Result<crate::traces::Exporting, crate::traces::TraceStartError> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::prelude::*;
    let scope = crate::traces::TraceScope {
        trusted_proxies: config.trusted_proxies.clone(),
        account_prefix: config.account_prefix.clone(),
    };
    let (spans, exporting) = crate::traces::layer(settings, scope)?;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .map_err(|_| crate::traces::TraceStartError::Subscriber)?;
    crate::traces::started();
    tracing::info!(endpoint = %settings.endpoint, service = %settings.service_name, "exporting traces over OTLP");
    Ok(exporting)
}

/// Random v4 UUIDs from the thread's generator: unique without a system call per request (the
/// `uuid` crate asks the kernel for every one).
#[derive(Clone, Copy, Default)]
pub struct MakeRandomUuid;

impl MakeRequestId for MakeRandomUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut buffer);
        Some(RequestId::new(axum::http::HeaderValue::from_str(text).expect("a uuid is a header value")))
    }
}

/// The request span: method, path and request id (never the query string).
#[derive(Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let request_id =
            request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-");
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        // Its name for a trace, and a trusted proxy's trace as its parent (when traces are on).
        crate::traces::spans::adopt(&span, request);
        span
    }
}

/// Gives each request its id (the caller's, or a new one).
pub fn set_request_id() -> SetRequestIdLayer<MakeRandomUuid> {
    SetRequestIdLayer::new(REQUEST_ID, MakeRandomUuid)
}

/// The longest caller's request id kept (a UUID is 36, a W3C trace id 32).
const REQUEST_ID_MAX_LEN: usize = 64;

/// Whether a caller's `x-request-id` is kept: 1 to [`REQUEST_ID_MAX_LEN`] letters, digits and
/// `-_.:`. What log collectors and upstream frameworks read as one token, and nothing a log line
/// or a header could be made to say more with.
pub fn acceptable_request_id(value: &[u8]) -> bool {
    (1..=REQUEST_ID_MAX_LEN).contains(&value.len())
        && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops the caller's `x-request-id` unless it is exactly one [`acceptable_request_id`], so that
/// [`set_request_id`] (the layer after this one) gives the request a new one.
pub fn check_request_id<B>(mut request: Request<B>) -> Request<B> {
    let mut ids = request.headers().get_all(&REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => true,
        (Some(id), None) => acceptable_request_id(id.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// [`check_request_id`] as a layer, for requests with body `B`.
pub fn checked_request_id<B>() -> tower::util::MapRequestLayer<fn(Request<B>) -> Request<B>> {
    tower::util::MapRequestLayer::new(check_request_id::<B> as fn(Request<B>) -> Request<B>)
}

/// The request's span and its log lines (responses at debug, server errors at error, except a
/// readiness probe's 503).
pub fn trace() -> TraceLayer<ProbesAnswerNotFail, RequestSpan> {
    TraceLayer::new(ProbesAnswerNotFail).make_span_with(RequestSpan)
}

/// Classifies responses as `ServerErrorsAsFailures` does, except on `/health` and `/ready`: a 503
/// there is the answer to "are you ready?" (a node starting, restarting or waiting for Redis,
/// asked every few milliseconds by a load balancer or a verifier), not a failed request, so it is
/// not logged as an error.
#[derive(Clone, Copy, Default)]
pub struct ProbesAnswerNotFail;

impl MakeClassifier for ProbesAnswerNotFail {
    type Classifier = ProbeAwareClassifier;
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn make_classifier<B>(&self, request: &Request<B>) -> ProbeAwareClassifier {
        ProbeAwareClassifier { probe: matches!(request.uri().path(), "/health" | "/ready") }
    }
}

/// [`ProbesAnswerNotFail`]'s classifier for one request.
#[derive(Clone, Copy)]
pub struct ProbeAwareClassifier {
    probe: bool,
}

impl ClassifyResponse for ProbeAwareClassifier {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        response: &axum::http::Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if self.probe {
            return ClassifiedResponse::Ready(Ok(()));
        }
        ServerErrorsAsFailures::new().classify_response(response)
    }

    fn classify_error<E: std::fmt::Display + 'static>(self, error: &E) -> Self::FailureClass {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

/// Copies the request id onto the response.
pub fn propagate_request_id() -> PropagateRequestIdLayer {
    PropagateRequestIdLayer::new(REQUEST_ID)
}

/// The four layers above around `router`, in the order every request meets them (the proxied
/// path in `server::dispatch` stacks the same ones).
pub fn layer(router: Router) -> Router {
    router
        .layer(propagate_request_id())
        .layer(trace())
        .layer(set_request_id())
        .layer(checked_request_id::<axum::body::Body>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_kept_only_in_a_safe_shape() {
        for kept in ["0b9c6f2e-8d3a-4c1e-9f7a-2b4d6e8f0a1c", "abc", "trace:01.a_b", &"a".repeat(64)] {
            assert!(acceptable_request_id(kept.as_bytes()), "{kept}");
        }
        for dropped in ["", "a b", "a\"b", "<script>", "x\ty", "é", &"a".repeat(65), "a,b", "a;b"] {
            assert!(!acceptable_request_id(dropped.as_bytes()), "{dropped:?}");
        }
    }

    #[test]
    fn several_ids_are_all_dropped() {
        let request = Request::builder().header(REQUEST_ID, "good-1").header(REQUEST_ID, "good-2").body(()).unwrap();
        assert!(check_request_id(request).headers().get(REQUEST_ID).is_none());
        let request = Request::builder().header(REQUEST_ID, "good-1").body(()).unwrap();
        assert_eq!(check_request_id(request).headers()[REQUEST_ID], "good-1");
    }

    fn failed(path: &str, status: u16) -> bool {
        let request = Request::get(path).body(()).unwrap();
        let response = axum::http::Response::builder().status(status).body(()).unwrap();
        match ProbesAnswerNotFail.make_classifier(&request).classify_response(&response) {
            ClassifiedResponse::Ready(result) => result.is_err(),
            ClassifiedResponse::RequiresEos(_) => unreachable!("no response here streams a classification"),
        }
    }

    #[test]
    fn a_readiness_probes_503_is_an_answer_and_other_server_errors_are_failures() {
        assert!(!failed("/ready", 503));
        assert!(!failed("/health", 503));
        assert!(failed("/api/x", 503));
        assert!(failed("/account/me", 500));
        assert!(failed("/ready/x", 503));
        assert!(!failed("/api/x", 404));
    }
}
