//! Service plumbing shared by every Outpost service: loading a TOML config
//! with errors that name the file, key and reason; TLS material (PEM loading,
//! an SNI resolver with a default certificate, a local CA + leaf generator);
//! the admin listener (`/metrics`, `/healthz`, `/readyz`); logging; and the
//! shutdown signal.
//!
//! It is not a framework: no request routing, no caching, no domain logic.
//! Each service crate owns its own behaviour and only borrows these shells.

pub mod admin;
pub mod config;
pub mod logging;
pub mod shutdown;
pub mod tls;

pub use admin::{serve_admin, AdminState};
pub use config::{load_config, ConfigError, Invalid, Validate};
pub use shutdown::Shutdown;
