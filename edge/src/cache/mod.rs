//! The cache core: keys, freshness, the collapsing
//! state machine, stored objects and the byte-bounded memory tier (ranges and
//! conditionals are `outpost_proto::{range, conditional}`, shared with the origin).
//!
//! Invariant: nothing in here does IO, reads a clock or spawns a task.
//! Callers pass `now`; the async shells live in `crate::fill` and
//! `crate::edge`.

pub mod freshness;
pub mod key;
pub mod lock;
pub mod memory;
pub mod object;
pub mod status;

pub use freshness::{Age, Freshness, Heuristic, NotStorable};
pub use key::{CacheKey, KeyError};
pub use lock::{FetchError, FillState, Plan};
pub use memory::{MemoryTier, Policy};
pub use object::{CachedObject, ObjectHead};
pub use status::{CacheStatus, Outcome};
