//! The network shells around [`crate::edge::Edge`]: TCP (TLS, HTTP/1.1 and
//! HTTP/2 by ALPN, hyper) and UDP (HTTP/3, quinn + h3) on one port number.

pub mod h3;
pub mod h3_send;
pub mod tcp;

/// The response header that marks this edge's refusal of a playback token
/// (`outpost-refused: token` on its 401/403). A child edge that forwarded
/// a token (`upstream.forward_token`) takes only a 401/403 so marked as
/// "the parent refused the forwarded token" (502 for the wave); any other
/// 401/403 from upstream, such as an origin forbidding an object, is
/// answered as it is.
pub const REFUSED_HEADER: &str = "outpost-refused";
/// The value of [`REFUSED_HEADER`] for a refused playback token.
pub const REFUSED_TOKEN: &str = "token";
