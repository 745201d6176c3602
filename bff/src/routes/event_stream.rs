//! Server-sent events and other long responses through the proxy.
//!
//! Nothing here buffers: the upstream's body is handed to hyper frame by frame, so an event
//! reaches the browser as soon as the upstream sends it, and a stream lasts as long as both
//! sides keep it open. The route's `timeout` bounds only the wait for the upstream's headers,
//! and `server.write_timeout` only a write the client does not take (see
//! `server::write_deadline`): a stream that the client reads, however long or quiet, is not cut.
//!
//! Event streams (`Content-Type: text/event-stream`) are counted: `bff_event_streams_total`
//! and `bff_event_streams_open` (a gauge that goes down when the stream ends either way). When
//! the node stops, its event streams end (cleanly, at a frame's boundary), as its WebSockets are
//! closed with 1001: the browser's `EventSource` reconnects, through the load balancer, to another
//! node, and the stop does not wait its `shutdown_timeout` out for streams that never end.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use futures::StreamExt;

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

/// `response` as is; an event stream is counted while it is open, and ends when `node_stops`
/// answers.
pub fn counted(response: Response, node_stops: impl std::future::Future<Output = ()> + Send + 'static) -> Response {
    if !is_event_stream(&response) {
        return response;
    }
    metrics::counter!("bff_event_streams_total").increment(1);
    metrics::gauge!("bff_event_streams_open").increment(1.0);
    let open = OpenStream;
    response.map(move |body| {
        let frames = body.into_data_stream().take_until(node_stops).map(move |data| {
            let _open = &open;
            data
        });
        Body::from_stream(frames)
    })
}
