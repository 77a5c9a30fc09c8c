//! Wire types and signatures shared by Outpost's services.
//!
//! What it is: the health report an edge sends to cache-control and the
//! HMAC signature that authenticates it, and the edge-state stream
//! cache-control serves to steering, and the playback tokens steering signs
//! and edges verify (`token`), and the RFC 9110 range (`range`) and
//! conditional-request (`conditional`) evaluation the origin and the edge
//! both answer with. Pure data and pure functions.
//!
//! What it is not: a client or server. Nothing here does IO or reads a
//! clock; callers pass timestamps in.

pub mod conditional;
pub mod health;
pub mod range;
pub mod signature;
pub mod stream;
pub mod token;

pub use health::{ContentDigest, HealthReport, TierUsage};
pub use signature::{sign, verify, SignatureError};
pub use stream::{EdgeState, EdgeView};
