//! Outpost's bench: load generators and the clients they (and the
//! multi-service tests) use to talk to the real services.
//!
//! What it is: HTTPS (HTTP/1.1, HTTP/2) and HTTP/3 clients that time each
//! response, and (as later issues land) the `outpost bench` scenarios.
//! What it is not: a test framework or a mock of any service.

pub mod client;
