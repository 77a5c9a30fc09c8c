//! Cache-control: decides which edges are alive from their signed health
//! reports (issue 3).
//!
//! What is here so far: the pure cores — the per-edge liveness state
//! machine ([`state`]) and report admission ([`admission`]). The service
//! shell (HTTP endpoints, the state stream for steering, metrics) is not
//! built yet, and `outpost cache-control` says so.
//!
//! What it is not: a database or a consensus system. State is soft and
//! rebuilt from reports.

pub mod admission;
pub mod state;
