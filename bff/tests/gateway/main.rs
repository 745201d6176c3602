//! Integration tests of the `bff` binary over real sockets: real `bff` processes, a real
//! `redis-server`, and the harness's mock issuer standing in for the identity provider.

mod api;
mod at_rest;
mod faults;
mod fingerprint;
mod lifecycle;
mod live;
mod login;
mod node_cache;
mod node_cache_restart;
mod operator_sessions;
mod record_formats;
mod redis_outage;
mod refusals;
mod stack;
