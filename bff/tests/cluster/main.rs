//! The gateway on a Redis Cluster of real `redis-server` processes (harness's
//! [`harness::process::RedisCluster`]): every store operation of a session stays on one slot;
//! login, `me`, logout, token refresh and back-channel logout work with the slots spread over
//! three primaries; the node cache hears every notice and goes off when it loses its
//! subscription; and a manual failover, a SIGKILLed primary and a live reshard under a load of
//! logins, calls and logouts lose no session and give no wrong answer (the unavailable answers
//! and their window are printed). The operators' session API lists and ends a user's sessions
//! there, effective on every node's cache at once.

#[allow(dead_code)]
#[path = "../gateway/stack.rs"]
mod stack;

mod faults;
mod fixture;
mod gateway;
mod operator_sessions;
mod store;
