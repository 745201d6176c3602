//! A cluster: the mock issuer, Redis, N `bff` nodes and a load balancer in front of them.

mod backend;
pub mod docker;
mod spec;

pub use backend::{Backend, ClusterError, Component};
pub use spec::{BackendKind, CLIENT_ID, CLIENT_SECRET, ClusterSpec, Images, LbPolicy, StoreKind, node_name};
