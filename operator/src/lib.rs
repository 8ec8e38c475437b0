//! memory-operator: keeps shortener Deployments healthy by memory policy.
//!
//! Layout: `crd` holds the `MemoryPolicy` types (the CRD YAML is generated
//! from them); `validate` gives the verdict on a policy that both the
//! schema's CEL rules and `memory-operator check` enforce; `decide` is the
//! pure decision engine: plain data in, a decision with its reasons out.

#![forbid(unsafe_code)]

pub mod actions;
pub mod adapt;
pub mod backtest;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod leader;
pub mod metrics;
pub mod prometheus;
pub mod rbac;
pub mod respond;
pub mod server;
pub mod status;
pub mod validate;

mod error;
pub use error::{Error, Result};
