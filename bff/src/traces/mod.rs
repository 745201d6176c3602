//! Traces: OpenTelemetry spans for each request (the request's log span, named for its trace),
//! with child spans for the Redis commands, the identity provider's endpoints (discovery, JWKS,
//! token, revocation), a token refresh and the upstream call; exported over OTLP/HTTP
//! (protobuf) when the standard `OTEL_*` variables ask for it ([`TraceSettings`]).
//!
//! Off by default, and then it costs nothing: no exporter, no extra layer in the subscriber
//! (the same subscriber as without this module), and every span constructor in [`spans`]
//! answers `Span::none()` after reading one flag. The W3C trace context is taken from trusted
//! proxies only and handed upstream with the gateway's span as the parent.

mod export_client;
mod settings;
pub mod spans;

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

pub use settings::{TraceSettings, TraceSettingsError};

static ON: AtomicBool = AtomicBool::new(false);
static SCOPE: OnceLock<Scope> = OnceLock::new();

/// [`TraceScope`], kept for the span code.
struct Scope {
    trusted_proxies: Vec<ipnet::IpNet>,
    account_prefix: String,
}

impl Scope {
    /// As `Config::is_trusted_proxy` decides.
    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// Whether spans are exported (and so made).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum TraceStartError {
    #[error("cannot start the trace export: {0}")]
    Exporter(String),
    #[error("a global subscriber is installed already")]
    Subscriber,
}

/// The running export: [`Exporting::shutdown`] sends the spans still buffered.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Exporting {
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(%error, "trace export did not shut down cleanly");
        }
    }
}

/// What the spans need of the configuration: whose `traceparent` is believed (the
/// `trusted_proxies`), and which paths are the gateway's own (named in a span's name).
pub struct TraceScope {
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub account_prefix: String,
}

/// The OpenTelemetry layer that exports bff's spans (and their events) to `settings.endpoint`,
/// and the running export. Spans are made once [`started`] is called, after the subscriber
/// with this layer is installed ([`crate::telemetry::init_exporting`]).
pub fn layer<S>(
    settings: &TraceSettings,
    scope: TraceScope,
) -> Result<(impl Layer<S> + Send + Sync + use<S>, Exporting), TraceStartError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
{
    let client = export_client::ExportClient::new(Duration::from_secs(10))
        .map_err(|e| TraceStartError::Exporter(e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.as_str())
        .build()
        .map_err(|e| TraceStartError::Exporter(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
        .build();
    let tracer = provider.tracer("bff");
    let _ = SCOPE.set(Scope { trusted_proxies: scope.trusted_proxies, account_prefix: scope.account_prefix });
    // No source locations, thread names or busy/idle times: what a trace is read for is the
    // request, its id and its children, and each of those costs on every span.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        // The spans (and their events) of bff itself, whatever the log filter keeps.
        .with_filter(Targets::new().with_target("bff", tracing::Level::INFO));
    Ok((spans, Exporting { provider }))
}

/// Spans are made from now on (the subscriber that exports them is installed).
pub fn started() {
    ON.store(true, Ordering::Relaxed);
}
