//! [`ExportClient`]: the HTTP client the OTLP exporter posts spans with: the workspace's own
//! `reqwest` (no second HTTP stack), on a one-thread runtime of its own. The SDK's batch
//! processor exports from a thread of its own, outside any Tokio runtime; the request is handed
//! to this runtime and awaited from there. Built only when traces are exported.

use std::fmt;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

pub(super) struct ExportClient {
    http: reqwest::Client,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExportClient")
    }
}

impl ExportClient {
    pub(super) fn new(timeout: Duration) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bff-otlp-export")
            .enable_all()
            .build()?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| std::io::Error::other(format!("OTLP client: {e}")))?;
        Ok(ExportClient { http, runtime: Some(runtime) })
    }
}

impl Drop for ExportClient {
    fn drop(&mut self) {
        // Dropped from wherever the provider is shut down, perhaps inside a runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self.runtime.as_ref().ok_or("the export runtime is shut down")?;
        let http = self.http.clone();
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))?;
        runtime
            .spawn(async move {
                let response = http.execute(request).await?;
                let mut answer = Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await?;
                Ok::<_, HttpError>(answer.body(body)?)
            })
            .await?
    }
}
