//! Service plumbing shared by every Outpost service: loading a TOML config
//! with errors that name the file, key and reason; TLS material (PEM loading,
//! an SNI resolver with a default certificate, a local CA + leaf generator);
//! the admin listener (`/metrics`, `/healthz`, `/readyz`); a plain HTTPS
//! listener for the control plane; logging; and the shutdown signal.
//!
//! It is not a framework: no request routing, no caching, no domain logic.
//! Each service crate owns its own behaviour and only borrows these shells.

pub mod admin;
pub mod config;
pub mod https;
pub mod logging;
pub mod shutdown;
pub mod tls;

pub use admin::{serve_admin, AdminState};
pub use config::{load_config, ConfigError, Invalid, Validate};
pub use shutdown::Shutdown;

/// An error and all its sources on one line (`a: b: c`), for logs and
/// answers where `{:#}` (anyhow) is not available.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        push_cause(&mut s, &inner.to_string());
        src = inner.source();
    }
    s
}

/// Append `": cause"` unless the message already ends with it (errors
/// that print their source in their own message, as most here do).
pub fn push_cause(message: &mut String, cause: &str) {
    if !cause.is_empty() && !message.ends_with(cause) {
        message.push_str(": ");
        message.push_str(cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("config x.toml: cannot read: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_printed_once() {
        let e = Repeats {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(error_chain(&e), "config x.toml: cannot read: no such file");
        let mut m = String::from("starting edge");
        push_cause(&mut m, "no such file");
        assert_eq!(m, "starting edge: no such file");
    }
}
