//! `harness`: the toolkit that proves a `bff` deployment scales.
//!
//! - [`issuer`]: a mock OpenID Connect provider;
//! - [`process`]: `redis-server` and `bff` as local child processes;
//! - [`cluster`]: Redis + N nodes (Docker containers or processes) behind a load balancer;
//! - [`fault`]: a relay that makes one link slow, silent or broken;
//! - [`drift`]: compares the settings every node must share, before any user runs;
//! - [`images`]: builds the local Docker images (no registry needed);
//! - [`client`]: a browser-like virtual user;
//! - [`soak`]: minutes of open-loop load with a seeded fault schedule, and its figures;
//! - [`live_socket`]: a browser-like WebSocket client;
//! - [`listener`]: listening sockets with a backlog for a thousand users at once;
//! - [`open_files`]: raises the open-files limit a thousand users need;
//! - [`run_dir`]: where a run's files (each node's log) go.

pub mod bench;
pub mod client;
pub mod cluster;
pub mod demo_app;
pub mod drift;
pub mod fault;
pub mod images;
pub mod issuer;
pub mod listener;
pub mod live_socket;
pub mod login_form;
pub mod open_files;
pub mod preset;
pub mod process;
pub mod redis_cluster_admin;
pub mod replication;
pub mod route_header;
pub mod run_dir;
pub mod scenario;
pub mod session_api;
pub mod soak;

pub use client::{GatewayPaths, LogoutMethod, Reply, VirtualUser};
pub use issuer::{IdTokenFault, MockIssuer, TokenFaults, User};
pub use live_socket::LiveSocket;
pub use process::{BffProcess, RedisProcess};
