//! serverconfig-webhook: makes the stock Seldon Core v2 controller's Server
//! workloads use the ServerConfig of the Server's own namespace.

pub mod admission;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod core;
pub mod doctor;
pub mod log_limit;
pub mod metrics;
pub mod migrate;
pub mod plugin;
pub mod render;
pub mod seldon_controller;
pub mod server;
pub mod shutdown;
pub mod sync;
pub mod telemetry;
pub mod yaml;
