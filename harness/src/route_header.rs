//! [`ROUTE_HEADER`]: how a virtual user asks the harness's load balancer for reproducible routing.
//!
//! The client sends it and the load balancer in `cluster` reads it (and strips it), so it stands
//! below both: the cluster hands out virtual users, and the client needs nothing of the cluster.

/// Header with which a client asks for reproducible routing: its value and the seed pick the node.
pub const ROUTE_HEADER: &str = "x-bffctl-route";
