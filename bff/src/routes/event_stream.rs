//! Server-sent events and other long responses through the proxy.
//!
//! Nothing here buffers: the upstream's body is handed to hyper frame by frame, so an event
//! reaches the browser as soon as the upstream sends it, and a stream lasts as long as both
//! sides keep it open. The route's `timeout` bounds only the wait for the upstream's headers,
//! and `server.write_timeout` only a write the client does not take (see
//! `server::write_deadline`): a stream that the client reads, however long or quiet, is not cut.
//!
//! Event streams (`Content-Type: text/event-stream`) are counted: `bff_event_streams_total`
//! and `bff_event_streams_open` (a gauge that goes down when the stream ends either way).

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use http_body_util::BodyExt;

/// Keeps `bff_event_streams_open` right however the stream ends.
struct OpenStream;

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("bff_event_streams_open").decrement(1.0);
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// `response` as is; an event stream is counted while it is open.
pub fn counted(response: Response) -> Response {
    if !is_event_stream(&response) {
        return response;
    }
    metrics::counter!("bff_event_streams_total").increment(1);
    metrics::gauge!("bff_event_streams_open").increment(1.0);
    let open = OpenStream;
    response.map(move |body| {
        Body::new(body.map_frame(move |frame| {
            let _open = &open;
            frame
        }))
    })
}
