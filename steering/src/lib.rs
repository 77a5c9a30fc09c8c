//! Steering and the playback API (issue 4): maps a client IP to its ISP
//! and place, ranks nearby healthy edges and signs playback tokens.
//!
//! Not built yet: `outpost steering` says so and exits non-zero. This
//! crate exists so the workspace layout is the one the design describes.
