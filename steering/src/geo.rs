//! Locating a client (being written).
