//! The fake Kubernetes API server over real HTTP, driven with a plain client.

mod objects;
mod subresources;
mod support;
mod watches;
