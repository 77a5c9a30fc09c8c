//! The network shells around [`crate::edge::Edge`]: TCP (TLS, HTTP/1.1 and
//! HTTP/2 by ALPN, hyper) and UDP (HTTP/3, quinn + h3) on one port number.

pub mod h3;
pub mod h3_send;
pub mod tcp;
