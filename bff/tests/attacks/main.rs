//! The attack suite: one test per defect a security review of the gateway found, each written to
//! fail before its fix. Real `bff` processes, a real `redis-server` and the harness's mock
//! issuer, through the gateway tests' own fixture.

#[allow(dead_code)]
#[path = "../gateway/stack.rs"]
mod stack;

mod backchannel;
mod cookies;
mod failover_notices;
mod fixture;
mod forwarding;
mod jwks;
mod key_ring;
mod limits;
mod login_flood;
mod logout;
mod metrics;
mod redis_tls;
mod refresh;
mod routes;
mod sentinel_trust;
mod slow_clients;
mod slow_flood;
mod stalled_replica;
mod upstream_view;
