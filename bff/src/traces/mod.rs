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
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

pub use settings::{TraceSettings, TraceSettingsError};

use crate::config::LogFormat;

static ON: AtomicBool = AtomicBool::new(false);
static SCOPE: OnceLock<Scope> = OnceLock::new();

/// What the span code needs of the configuration.
struct Scope {
    trusted_proxies: Vec<ipnet::IpNet>,
    account_prefix: String,
}

impl Scope {
    /// As [`crate::config::Config::is_trusted_proxy`] decides.
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

/// Installs the global subscriber as [`crate::telemetry::init`] does (logs filtered by
/// `filter`), plus the OpenTelemetry layer that exports bff's spans to `settings.endpoint`.
pub fn init(
    format: LogFormat,
    filter: &str,
    settings: &TraceSettings,
    config: &crate::config::Config,
) -> Result<Exporting, TraceStartError> {
    use std::io::IsTerminal;
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
    let _ = SCOPE
        .set(Scope { trusted_proxies: config.trusted_proxies.clone(), account_prefix: config.account_prefix.clone() });

    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    // The spans (and their events) of bff itself, whatever the log filter keeps.
    // No source locations, thread names or busy/idle times: what a trace is read for is the
    // request, its id and its children, and each of those costs on every span.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(Targets::new().with_target("bff", tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .map_err(|_| TraceStartError::Subscriber)?;
    ON.store(true, Ordering::Relaxed);
    tracing::info!(endpoint = %settings.endpoint, service = %settings.service_name, "exporting traces over OTLP");
    Ok(Exporting { provider })
}
