//! [`TraceSettings`]: whether and where traces are exported, from the standard OpenTelemetry
//! variables (read here, from the map the binary hands over, not from the process environment):
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full URL spans are POSTed to (e.g. `http://collector:4318/v1/traces`) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL; `/v1/traces` is appended |
//! | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (the default, and the one supported) |
//! | `OTEL_SERVICE_NAME` | the `service.name` of the spans (default `bff`) |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no export, whatever the endpoint says |
//!
//! Without an endpoint nothing is exported and nothing of the exporter is built. The SDK reads
//! its own tuning variables as usual (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`).

use std::collections::HashMap;

/// A standard OpenTelemetry variable bff cannot use as given.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {value:?}: {why}")]
pub struct TraceSettingsError {
    pub variable: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The URL the OTLP/HTTP export is POSTed to.
    pub endpoint: url::Url,
    pub service_name: String,
}

const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";

impl TraceSettings {
    /// The export `env` asks for; `None` when it asks for none (the default).
    pub fn from_env(env: &HashMap<String, String>) -> Result<Option<TraceSettings>, TraceSettingsError> {
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if get(SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match get(TRACES_EXPORTER) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(TraceSettingsError {
                    variable: TRACES_EXPORTER,
                    value: other.to_owned(),
                    why: "bff exports traces over OTLP only: use otlp or none",
                });
            }
        }
        let (variable, endpoint) = match (get(TRACES_ENDPOINT), get(ENDPOINT)) {
            (Some(full), _) => (TRACES_ENDPOINT, full.to_owned()),
            (None, Some(base)) => (ENDPOINT, format!("{}/v1/traces", base.trim_end_matches('/'))),
            (None, None) => return Ok(None),
        };
        let bad_url = |why| TraceSettingsError { variable, value: endpoint.clone(), why };
        let url = url::Url::parse(&endpoint).map_err(|_| bad_url("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad_url("not an http(s) URL"));
        }
        for variable in [TRACES_PROTOCOL, PROTOCOL] {
            match get(variable) {
                None | Some("http/protobuf") => {}
                Some(other) => {
                    return Err(TraceSettingsError {
                        variable,
                        value: other.to_owned(),
                        why: "bff exports OTLP as http/protobuf only (a collector takes it on its port 4318)",
                    });
                }
            }
            if get(variable).is_some() {
                break;
            }
        }
        let service_name = get(SERVICE_NAME).unwrap_or("bff").to_owned();
        Ok(Some(TraceSettings { endpoint: url, service_name }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<TraceSettings>, TraceSettingsError> {
        TraceSettings::from_env(&vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(settings(&[(SERVICE_NAME, "x"), (PROTOCOL, "http/protobuf")]).unwrap(), None);
        assert_eq!(settings(&[(ENDPOINT, "http://c:4318"), (SDK_DISABLED, "true")]).unwrap(), None);
        assert_eq!(settings(&[(ENDPOINT, "http://c:4318"), (TRACES_EXPORTER, "none")]).unwrap(), None);
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_signal_one_is_taken_as_it_is() {
        let base = settings(&[(ENDPOINT, "http://collector:4318/")]).unwrap().unwrap();
        assert_eq!(base.endpoint.as_str(), "http://collector:4318/v1/traces");
        assert_eq!(base.service_name, "bff");
        let full =
            settings(&[(ENDPOINT, "http://other:4318"), (TRACES_ENDPOINT, "https://c/otlp/traces")]).unwrap().unwrap();
        assert_eq!(full.endpoint.as_str(), "https://c/otlp/traces");
        let named = settings(&[(ENDPOINT, "http://c:4318"), (SERVICE_NAME, "gateway-eu")]).unwrap().unwrap();
        assert_eq!(named.service_name, "gateway-eu");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_naming_the_variable() {
        let grpc = settings(&[(ENDPOINT, "http://c:4317"), (PROTOCOL, "grpc")]).unwrap_err();
        assert_eq!(grpc.variable, PROTOCOL);
        assert!(grpc.to_string().starts_with("OTEL_EXPORTER_OTLP_PROTOCOL: \"grpc\": "), "{grpc}");
        // The signal's own protocol wins over the general one.
        assert!(
            settings(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "grpc"), (TRACES_PROTOCOL, "http/protobuf")])
                .unwrap()
                .is_some()
        );
        assert_eq!(settings(&[(TRACES_ENDPOINT, "collector:4318")]).unwrap_err().variable, TRACES_ENDPOINT);
        assert_eq!(settings(&[(ENDPOINT, "ftp://c")]).unwrap_err().variable, ENDPOINT);
        assert_eq!(
            settings(&[(ENDPOINT, "http://c"), (TRACES_EXPORTER, "jaeger")]).unwrap_err().variable,
            TRACES_EXPORTER
        );
    }
}
