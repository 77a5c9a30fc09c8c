//! HMAC-SHA256 signatures over a request body and its timestamp, with a
//! key id so keys can rotate. Used for edge health reports.
//!
//! The signed message is `"{timestamp_ms}\n{body}"`, so a captured body
//! cannot be replayed under a fresh timestamp.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the key id.
pub const KEY_ID_HEADER: &str = "x-outpost-key-id";
/// Header carrying the timestamp (ms since the Unix epoch).
pub const TIMESTAMP_HEADER: &str = "x-outpost-timestamp";
/// Header carrying the hex signature.
pub const SIGNATURE_HEADER: &str = "x-outpost-signature";

/// Why a signature was refused. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is not hex")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp {timestamp_ms} is {skew_ms} ms away from now (limit {limit_ms} ms)")]
    Skew {
        timestamp_ms: u64,
        skew_ms: u64,
        limit_ms: u64,
    },
}

impl SignatureError {
    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureError::Malformed | SignatureError::Mismatch => "bad-signature",
            SignatureError::Skew { .. } => "stale-timestamp",
        }
    }
}

fn mac(secret: &[u8], timestamp_ms: u64, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(timestamp_ms.to_string().as_bytes());
    m.update(b"\n");
    m.update(body);
    m
}

/// Hex HMAC-SHA256 of `timestamp_ms` and `body`.
pub fn sign(secret: &[u8], timestamp_ms: u64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp_ms, body).finalize().into_bytes())
}

/// Check a signature (constant time) and that the timestamp is within
/// `max_skew_ms` of `now_ms`.
pub fn verify(
    secret: &[u8],
    timestamp_ms: u64,
    body: &[u8],
    signature_hex: &str,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<(), SignatureError> {
    let sig = hex::decode(signature_hex.trim()).map_err(|_| SignatureError::Malformed)?;
    mac(secret, timestamp_ms, body)
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)?;
    let skew_ms = now_ms.abs_diff(timestamp_ms);
    if skew_ms > max_skew_ms {
        return Err(SignatureError::Skew {
            timestamp_ms,
            skew_ms,
            limit_ms: max_skew_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn good_signature_verifies() {
        let s = sign(b"secret", NOW, b"{}");
        assert_eq!(s.len(), 64);
        assert_eq!(verify(b"secret", NOW, b"{}", &s, NOW + 500, 5_000), Ok(()));
    }

    #[test]
    fn every_tampering_is_refused() {
        let s = sign(b"secret", NOW, b"{\"a\":1}");
        assert_eq!(
            verify(b"other", NOW, b"{\"a\":1}", &s, NOW, 5_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", NOW, b"{\"a\":2}", &s, NOW, 5_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", NOW + 1, b"{\"a\":1}", &s, NOW, 5_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", NOW, b"{\"a\":1}", "zz", NOW, 5_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"secret", NOW, b"{\"a\":1}", &s[..62], NOW, 5_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamps_outside_the_skew_are_refused() {
        let s = sign(b"k", NOW, b"x");
        assert!(matches!(
            verify(b"k", NOW, b"x", &s, NOW + 5_001, 5_000),
            Err(SignatureError::Skew { .. })
        ));
        assert!(matches!(
            verify(b"k", NOW, b"x", &s, NOW - 5_001, 5_000),
            Err(SignatureError::Skew { .. })
        ));
        assert_eq!(verify(b"k", NOW, b"x", &s, NOW - 5_000, 5_000), Ok(()));
    }
}
