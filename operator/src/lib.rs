//! memory-operator: keeps shortener Deployments healthy by memory policy.
//!
//! Three crates, one per layer: the `MemoryPolicy` API (types, validation and the one reading
//! of a policy) is `memory-policy-api` under `api/`; the pure decision engine is
//! `memory-engine` under `engine/`; this crate is the operator on top of them. `watched` is what its
//! caches hold of pods and Deployments; `adapt` maps them onto the engine's types; `prometheus` reads usage; the controller gathers,
//! asks the engine, has `respond` act (through `actions`) and tell, and writes what `status`
//! builds; `backtest` replays history through the engine; `leader`, `metrics`, `server` and
//! `rbac` run it.
#![forbid(unsafe_code)]

pub mod actions;
pub mod adapt;
pub mod backtest;
pub mod context;
pub mod controller;
pub mod gather;
pub mod leader;
pub mod metrics;
pub mod prometheus;
pub mod rbac;
pub mod recall;
pub mod report;
pub mod respond;
pub mod server;
pub mod status;
pub mod watched;

mod error;
pub use error::{Error, Result};
