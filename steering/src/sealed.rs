//! Small signed values steering hands out and takes back: session ids and
//! subscriber tokens. `base64url(json) "." hex(HMAC-SHA256(secret, json))`.
//! Pure; callers check expiry against their own `now`. A value is sealed
//! with one secret and may be opened with several ([`open_any`]), so the
//! sealing secret can rotate while values sealed with the old one are
//! still out there.

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
    open_any(&[secret], sealed)
}

/// Check the signature against each of `secrets` in turn (the current one
/// and older ones still honoured) and decode. No secrets: `BadSignature`.
pub fn open_any<T: DeserializeOwned, S: AsRef<[u8]>>(secrets: &[S], sealed: &str) -> Result<T, Unseal> {
    let (payload, sig) = sealed.split_once('.').ok_or(Unseal::Malformed)?;
    let json = B64.decode(payload).map_err(|_| Unseal::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| Unseal::Malformed)?;
    if !secrets
        .iter()
        .any(|secret| mac(secret.as_ref(), &json).verify_slice(&sig).is_ok())
    {
        return Err(Unseal::BadSignature);
    }
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

    #[test]
    fn open_any_accepts_any_listed_secret_and_nothing_else() {
        let old = seal(b"old", &("a", 1));
        let new = seal(b"new", &("b", 2));
        let both: [&[u8]; 2] = [b"new", b"old"];
        assert_eq!(open_any::<(String, u32), _>(&both, &old), Ok(("a".into(), 1)));
        assert_eq!(open_any::<(String, u32), _>(&both, &new), Ok(("b".into(), 2)));
        assert_eq!(
            open_any::<(String, u32), _>(&[b"new"], &old),
            Err(Unseal::BadSignature),
            "a secret no longer listed opens nothing"
        );
        assert_eq!(
            open_any::<(String, u32), _>(&[] as &[&[u8]], &old),
            Err(Unseal::BadSignature)
        );
        assert_eq!(open_any::<(String, u32), _>(&both, "x.zz"), Err(Unseal::Malformed));
        let mut forged = old.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(open_any::<(String, u32), _>(&both, &forged), Err(Unseal::BadSignature));
    }
}
