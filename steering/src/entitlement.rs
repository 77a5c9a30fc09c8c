//! Subscriber tokens: what the subscriber system hands a player so the
//! playback API knows its plans. A [`crate::sealed`] value; pure.

use serde::{Deserialize, Serialize};

use crate::catalog::Refusal;
use crate::sealed;

/// The claims of a subscriber token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Subscriber id (for logs).
    pub sub: String,
    /// Plans the subscriber holds.
    pub plans: Vec<String>,
    /// Unix seconds after which the token is refused.
    pub exp: u64,
}

/// Sign a subscriber token (the subscriber system's side; tests and tools).
pub fn issue(secret: &[u8], s: &Subscriber) -> String {
    sealed::seal(secret, s)
}

/// Check a subscriber token at `now` (unix seconds).
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Subscriber, Refusal> {
    let s: Subscriber = sealed::open(secret, token.trim())
        .map_err(|e| Refusal::Entitlement(format!("subscriber token refused: {e}")))?;
    if s.exp < now {
        return Err(Refusal::Entitlement(format!("subscriber token expired at {}", s.exp)));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_expired_and_forged() {
        let s = Subscriber {
            sub: "u1".into(),
            plans: vec!["basic".into()],
            exp: 1000,
        };
        let t = issue(b"subscriber-secret-0123", &s);
        assert_eq!(verify(b"subscriber-secret-0123", &t, 999), Ok(s));
        assert_eq!(
            verify(b"subscriber-secret-0123", &t, 1001).unwrap_err().as_str(),
            "entitlement"
        );
        assert_eq!(verify(b"another-secret-012345", &t, 999).unwrap_err().status(), 403);
    }
}
