//! A URL shortener that stays small under load and reports its memory.
//!
//! Layout: `http/` holds the axum handlers (one file per resource) and maps
//! errors to problem documents; `store` is the database (PostgreSQL or SQLite
//! through one portable code path); `cache` bounds redirects in bytes; `clicks`
//! buffers counts so redirects never write; `memory/` reads the allocator,
//! the process and the cgroup limit, and its `policy` (pure) drives the
//! `manager` that trims and sheds; `metrics` exports it all to Prometheus.

#![deny(unsafe_code)]

pub mod cache;
pub mod clicks;
pub mod config;
mod connections;
mod error;
pub mod http;
pub mod links;
pub mod memory;
pub mod metrics;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod units;

pub use config::Config;
pub use error::{Error, Result};
pub use http::app;
pub use server::Server;
pub use state::AppState;
