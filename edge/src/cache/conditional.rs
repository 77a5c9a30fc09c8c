//! Conditional requests (RFC 9110 §13): `If-None-Match` and
//! `If-Modified-Since` against a stored representation's validators. The
//! logic is `outpost_proto::conditional`, shared with the origin; this
//! module keeps the edge's path to it.

pub use outpost_proto::conditional::not_modified;
