//! Small signed values steering hands out and takes back: session ids and
//! subscriber tokens. `base64url(json) "." hex(HMAC-SHA256(secret, json))`.
//! Pure; callers check expiry against their own `now`.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn mac(secret: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(payload);
    m
}

/// Sign `value`.
pub fn seal<T: Serialize>(secret: &[u8], value: &T) -> String {
    let json = serde_json::to_vec(value).expect("plain data serializes");
    let sig = hex::encode(mac(secret, &json).finalize().into_bytes());
    format!("{}.{sig}", B64.encode(&json))
}

/// Why a sealed value was refused. The presenter's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unseal {
    #[error("malformed")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
}

/// Check the signature and decode.
pub fn open<T: DeserializeOwned>(secret: &[u8], sealed: &str) -> Result<T, Unseal> {
    let (payload, sig) = sealed.split_once('.').ok_or(Unseal::Malformed)?;
    let json = B64.decode(payload).map_err(|_| Unseal::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| Unseal::Malformed)?;
    mac(secret, &json)
        .verify_slice(&sig)
        .map_err(|_| Unseal::BadSignature)?;
    serde_json::from_slice(&json).map_err(|_| Unseal::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_tampering_refused() {
        let s = seal(b"k", &("a", 1));
        assert_eq!(open::<(String, u32)>(b"k", &s), Ok(("a".into(), 1)));
        assert_eq!(open::<(String, u32)>(b"other", &s), Err(Unseal::BadSignature));
        for i in 0..s.len() {
            let mut b = s.clone().into_bytes();
            b[i] ^= 0x01;
            let t = String::from_utf8_lossy(&b).into_owned();
            assert!(open::<(String, u32)>(b"k", &t).is_err(), "flip at {i}");
        }
        assert_eq!(open::<(String, u32)>(b"k", "nodot"), Err(Unseal::Malformed));
        assert_eq!(open::<(String, u32)>(b"k", ""), Err(Unseal::Malformed));
    }
}
