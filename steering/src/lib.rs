//! Steering and the playback API (issue 4): maps a client IP to its ISP
//! and place ([`geo`]), ranks nearby healthy edges ([`rank`]), and answers
//! play requests with ranked, token-signed edge URLs and HLS/DASH Content
//! Steering manifests.
//!
//! What it is not: a cache or a health checker. It never probes edges; it
//! trusts what cache-control says and keeps answering from the last state
//! it received when cache-control is unreachable.

pub mod catalog;
pub mod edges;
pub mod entitlement;
pub mod geo;
pub mod manifest;
pub mod metrics;
pub mod rank;
pub mod sealed;
