//! The `MemoryPolicy` API (`shortener.dev/v1alpha1`): what a policy is, when it is sound,
//! and what it means to the engine. No client and no controller runtime: `memory-operator
//! check` and the CRD need only this.
//!
//! - [`crd`]: the types (the CRD YAML is generated from them), and [`crd::names`], the words
//!   status and Events use;
//! - [`validate`]: the verdict on a policy that both the schema's CEL rules and
//!   `memory-operator check` enforce;
//! - [`promql`]: a policy's own query, parsed and held to the policy's namespace;
//! - [`reading`]: the one reading of a sound policy that the engine, the status, the query
//!   and the actions all take.

#![forbid(unsafe_code)]

pub mod crd;
pub mod promql;
pub mod reading;
pub mod validate;

mod error;
pub use error::{Error, Result};
