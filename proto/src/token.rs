//! Playback tokens: CTA-5007 Common Access Tokens that steering signs and
//! the edge verifies.
//!
//! A token is a CWT in a COSE_Mac0 structure (HMAC-SHA256, COSE alg 5,
//! tagged 61 then 17), built and MAC'ed by the `common-access-token`
//! crate, carried as base64url without padding. What it holds:
//!
//! | claim | CBOR | meaning |
//! |---|---|---|
//! | `kid` (protected header 4) | text | which [`TokenKey`] signed it, so keys rotate |
//! | `exp` (4), `nbf` (5), `iat` (6) | int | unix seconds |
//! | `cti` (7) | bytes (UTF-8) | the session id, for logs |
//! | `catu` (312) | `{3 (path): {1 (prefix): text}}` | the title's path prefix, matched on a segment boundary |
//! | `catnip` (311) | `[text]` | optional client network as CIDR text (the crate's encoding, not RFC 9164 tags) |
//!
//! Verification is strict and fails closed: the CBOR is checked for shape
//! and bounds before the crate decodes it (no length or nesting an attacker
//! picks can make it allocate or recurse), only the tags 61 and 17 are
//! allowed, the unprotected header must be empty, nothing may follow the
//! structure, the MAC is checked before any claim, and a claim this module
//! does not enforce (any other `cat*` restriction) makes the token
//! malformed rather than silently ignored.
//!
//! Pure: no IO and no clock; callers pass `now` (unix seconds).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use common_access_token::{cat_keys, match_types, uri_components, Algorithm, CborValue, KeyId, RegisteredClaims};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Request header that may carry a token.
pub const HEADER: &str = "CTA-Common-Access-Token";
/// Query parameter that may carry a token (matched case-insensitively).
pub const QUERY_PARAM: &str = "CAT";
/// Leading path segment that carries a token: `/t/<token>/<path>`.
pub const PATH_PREFIX: &str = "/t/";
/// Shortest path segment taken as a token: an HS256 MAC alone is 32 bytes,
/// 43 base64url characters, so no token is shorter. Shorter (or
/// non-base64url) segments after `/t/` are ordinary path segments, so a
/// library directory named `t` keeps working.
pub const MIN_PATH_TOKEN_LEN: usize = 43;
/// Longest token accepted, in characters.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Deepest CBOR nesting accepted inside a token.
const MAX_DEPTH: usize = 8;

/// A signing key. The id travels in the token's protected header.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub id: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Scope: the title's path prefix, e.g. `/synth/t0001/`. A path is in
    /// scope when it starts with the prefix on a segment boundary, so
    /// `/synth/t0001` covers `/synth/t0001/x` but not `/synth/t00010/x`.
    pub path_prefix: String,
    /// Unix seconds; the token is refused from this second on.
    pub expires_at: u64,
    /// Unix seconds; the token is refused before this second.
    pub not_before: Option<u64>,
    /// CIDR (or a single address) the client IP must be in.
    pub client_network: Option<String>,
    /// Session id, for logs.
    pub session: Option<String>,
}

/// Why a token was refused. Always the request's fault (or its issuer's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no playback token (expected a /t/<token>/ path prefix, ?CAT= or the {HEADER} header)")]
    Missing,
    #[error("malformed playback token: {0}")]
    Malformed(String),
    #[error("playback token signed with an unknown key id `{0}`")]
    UnknownKey(String),
    #[error("playback token signature does not verify")]
    BadSignature,
    #[error("playback token expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error("playback token not valid before {not_before} (now {now})")]
    NotYetValid { not_before: u64, now: u64 },
    #[error("playback token is for {prefix}, not {path}")]
    WrongScope { path: String, prefix: String },
    #[error("playback token is for network {network}, not client {client}")]
    WrongNetwork { client: IpAddr, network: String },
}

impl TokenError {
    /// HTTP status: 401 when the token does not authenticate the request,
    /// 403 when it does but does not cover it.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::WrongScope { .. } | TokenError::WrongNetwork { .. } => 403,
            _ => 401,
        }
    }

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::UnknownKey(_) => "unknown-key",
            TokenError::BadSignature => "bad-signature",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not-yet-valid",
            TokenError::WrongScope { .. } => "wrong-scope",
            TokenError::WrongNetwork { .. } => "wrong-network",
        }
    }
}

/// Sign `grant` with `key`: base64url (no padding), safe in a path segment.
/// `now` becomes the `iat` claim. A `client_network` that is not a CIDR
/// makes a token every verifier refuses as malformed (see
/// [`valid_network`]).
pub fn issue(key: &TokenKey, grant: &Grant, now: u64) -> String {
    // The crate stores claims as i64: clamp so a far-future expiry stays positive.
    let clamp = |t: u64| t.min(i64::MAX as u64);
    let mut claims = RegisteredClaims::new()
        .with_expiration(clamp(grant.expires_at))
        .with_issued_at(clamp(now));
    if let Some(nbf) = grant.not_before {
        claims = claims.with_not_before(clamp(nbf));
    }
    if let Some(s) = &grant.session {
        claims = claims.with_cti(s.as_bytes().to_vec());
    }
    let catu = BTreeMap::from([(
        uri_components::PATH,
        CborValue::Map(BTreeMap::from([(
            match_types::PREFIX,
            CborValue::Text(grant.path_prefix.clone()),
        )])),
    )]);
    let mut builder = common_access_token::TokenBuilder::new()
        .algorithm(Algorithm::HmacSha256)
        .protected_key_id(KeyId::string(key.id.clone()))
        .registered_claims(claims)
        .custom_cbor(cat_keys::CATU, CborValue::Map(catu));
    if let Some(net) = &grant.client_network {
        builder = builder.custom_array(cat_keys::CATNIP, vec![CborValue::Text(net.clone())]);
    }
    let token = builder
        .sign(&key.secret)
        .expect("the algorithm is set, so signing cannot fail");
    B64.encode(token.to_bytes().expect("CBOR encoding into a Vec cannot fail"))
}

/// Verify `token` for a request of `path` from `client_ip` at `now`, with no
/// clock leeway. See [`verify_with_skew`].
pub fn verify(keys: &[TokenKey], token: &str, path: &str, client_ip: IpAddr, now: u64) -> Result<Grant, TokenError> {
    verify_with_skew(keys, token, path, client_ip, now, 0)
}

/// Verify `token`: shape, key id (one of `keys`), MAC, then expiry and
/// not-before (each with `skew` seconds of leeway), scope and network.
///
/// `path` must be normalized (the edge passes its cache key's path): a path
/// with a `.` or `..` segment is never in scope.
pub fn verify_with_skew(
    keys: &[TokenKey],
    token: &str,
    path: &str,
    client_ip: IpAddr,
    now: u64,
    skew: u64,
) -> Result<Grant, TokenError> {
    let decoded = decode(token)?;
    let kid = match decoded.header.protected.get(&common_access_token::cose_labels::KID) {
        Some(CborValue::Text(kid)) => kid.clone(),
        Some(_) => return Err(malformed("the key id (kid) is not text")),
        None => return Err(malformed("no key id (kid) in the protected header")),
    };
    let key = keys
        .iter()
        .find(|k| k.id == kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.chars().take(64).collect()))?;
    if decoded.header.algorithm() != Some(Algorithm::HmacSha256) {
        return Err(malformed("the algorithm is not HMAC-SHA256 (COSE alg 5)"));
    }
    decoded.verify(&key.secret).map_err(|e| match e {
        common_access_token::Error::SignatureVerification => TokenError::BadSignature,
        other => TokenError::Malformed(other.to_string()),
    })?;
    let grant = grant_of(&decoded)?;
    if now >= grant.expires_at.saturating_add(skew) {
        return Err(TokenError::Expired {
            expires_at: grant.expires_at,
            now,
        });
    }
    if let Some(nbf) = grant.not_before {
        if now.saturating_add(skew) < nbf {
            return Err(TokenError::NotYetValid { not_before: nbf, now });
        }
    }
    if !in_scope(path, &grant.path_prefix) {
        return Err(TokenError::WrongScope {
            path: path.chars().take(256).collect(),
            prefix: grant.path_prefix,
        });
    }
    if let Some(net) = &grant.client_network {
        if !in_network(client_ip, net).unwrap_or(false) {
            return Err(TokenError::WrongNetwork {
                client: client_ip,
                network: net.clone(),
            });
        }
    }
    Ok(grant)
}

/// Where a request carries its token, in order of precedence: a leading
/// `/t/<token>/` path segment (the path is returned without it; the segment
/// must be at least [`MIN_PATH_TOKEN_LEN`] base64url characters and be
/// followed by the object's path), the `CAT` query parameter, or the
/// `CTA-Common-Access-Token` header. An empty token counts as none. The
/// returned path is always a suffix of `path`.
pub fn extract<'a>(path: &'a str, query: Option<&'a str>, header: Option<&'a str>) -> (Option<&'a str>, Cow<'a, str>) {
    if let Some((token, tail)) = path
        .strip_prefix(PATH_PREFIX)
        .and_then(|r| r.find('/').map(|i| r.split_at(i)))
    {
        let b64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if token.len() >= MIN_PATH_TOKEN_LEN && token.bytes().all(b64url) {
            return (Some(token), Cow::Borrowed(tail));
        }
    }
    let from_query = query.and_then(|q| {
        q.split('&').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case(QUERY_PARAM).then_some(v)
        })
    });
    let token = from_query.or(header.map(str::trim)).filter(|t| !t.is_empty());
    (token, Cow::Borrowed(path))
}

/// Whether `net` is a network [`Grant::client_network`] accepts: `addr/len`
/// or a single address.
pub fn valid_network(net: &str) -> bool {
    parse_network(net).is_some()
}

fn malformed(why: &str) -> TokenError {
    TokenError::Malformed(why.to_owned())
}

/// base64url → bounded, well-shaped CBOR → the crate's token.
fn decode(token: &str) -> Result<common_access_token::Token, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_LEN} characters")));
    }
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let bytes = B64
        .decode(token)
        .map_err(|e| TokenError::Malformed(format!("not base64url without padding: {e}")))?;
    check_cose_mac0(&bytes).map_err(TokenError::Malformed)?;
    let decoded = common_access_token::Token::from_bytes(&bytes).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if !decoded.header.unprotected.is_empty() {
        return Err(malformed("the unprotected header must be empty"));
    }
    Ok(decoded)
}

/// The claims of a token whose MAC verified, as a [`Grant`]. Claims that
/// restrict use but are not enforced here make the token malformed.
fn grant_of(t: &common_access_token::Token) -> Result<Grant, TokenError> {
    let r = &t.claims.registered;
    let expires_at = r.exp.ok_or_else(|| malformed("no expiry (exp)"))?;
    let mut path_prefix = None;
    let mut client_network = None;
    for (key, value) in &t.claims.custom {
        match (*key, value) {
            (cat_keys::CATU, CborValue::Map(components)) => {
                let prefix = match components.get(&uri_components::PATH) {
                    Some(CborValue::Map(m)) if components.len() == 1 && m.len() == 1 => m.get(&match_types::PREFIX),
                    _ => None,
                };
                match prefix {
                    Some(CborValue::Text(p)) if p.starts_with('/') => path_prefix = Some(p.clone()),
                    _ => return Err(malformed("catu must be exactly a path prefix starting with /")),
                }
            }
            (cat_keys::CATNIP, CborValue::Array(nets)) => match nets.as_slice() {
                [CborValue::Text(n)] if valid_network(n) => client_network = Some(n.clone()),
                _ => return Err(malformed("catnip must be one CIDR as text")),
            },
            (k, _) => return Err(TokenError::Malformed(format!("unsupported claim {k}"))),
        }
    }
    Ok(Grant {
        path_prefix: path_prefix.ok_or_else(|| malformed("no scope (catu path prefix)"))?,
        expires_at,
        not_before: r.nbf,
        client_network,
        session: r.cti.as_ref().map(|c| String::from_utf8_lossy(c).into_owned()),
    })
}

/// `path` starts with `prefix` on a segment boundary and has no dot segment.
fn in_scope(path: &str, prefix: &str) -> bool {
    if path.split('/').any(|s| s == "." || s == "..") {
        return false;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn parse_network(net: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (net.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

fn in_network(ip: IpAddr, net: &str) -> Option<bool> {
    let (base, len) = parse_network(net)?;
    let mask = |bits: u32, len: u8| -> u128 {
        if len == 0 {
            0
        } else {
            (u128::MAX << (bits - u32::from(len))) & (u128::MAX >> (128 - bits))
        }
    };
    Some(match (ip.to_canonical(), base.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = mask(32, len.min(32));
            u128::from(u32::from(a)) & m == u128::from(u32::from(b)) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = mask(128, len);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    })
}

/// Check that `b` is one COSE_Mac0 structure (optionally tagged 61 then
/// 17) with definite, in-bounds lengths, nesting at most [`MAX_DEPTH`],
/// well-formed CBOR inside the protected header and payload byte strings,
/// and nothing after it. Runs before the crate decodes anything.
fn check_cose_mac0(b: &[u8]) -> Result<(), String> {
    let mut r = Cbor { b, pos: 0 };
    let mut head = r.head()?;
    if head == (6, 61) {
        head = r.head()?;
    }
    if head == (6, 17) {
        head = r.head()?;
    }
    if head != (4, 4) {
        return Err("not a COSE_Mac0 structure (a 4-element array, tags 61 and 17 only)".into());
    }
    let protected = r.bstr("protected header")?;
    one_item(protected, "protected header")?;
    r.item(1)?; // the unprotected header (the crate checks it is a map)
    let payload = r.bstr("payload")?;
    one_item(payload, "payload")?;
    r.bstr("MAC")?;
    if r.pos != b.len() {
        return Err("bytes after the token".into());
    }
    Ok(())
}

/// `b` is exactly one well-formed CBOR item.
fn one_item(b: &[u8], what: &str) -> Result<(), String> {
    let mut c = Cbor { b, pos: 0 };
    c.item(1)?;
    if c.pos != b.len() {
        return Err(format!("bytes after the {what}"));
    }
    Ok(())
}

/// A minimal CBOR walker: heads and lengths only, never allocating.
struct Cbor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let rest = &self.b[self.pos..];
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= rest.len())
            .ok_or("truncated")?;
        self.pos += n;
        Ok(&rest[..n])
    }

    fn bstr(&mut self, what: &str) -> Result<&'a [u8], String> {
        match self.head()? {
            (2, len) => self.take(len),
            _ => Err(format!("the {what} is not a byte string")),
        }
    }

    /// Major type and argument of the next item (indefinite lengths refused).
    fn head(&mut self) -> Result<(u8, u64), String> {
        let ib = self.take(1)?[0];
        let arg = match ib & 31 {
            n @ 0..=23 => u64::from(n),
            n @ 24..=27 => self
                .take(1 << (n - 24))?
                .iter()
                .fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
            31 => return Err("indefinite-length CBOR".into()),
            _ => return Err("reserved CBOR head".into()),
        };
        Ok((ib >> 5, arg))
    }

    fn item(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("CBOR nested too deeply".into());
        }
        let (major, arg) = self.head()?;
        let remaining = (self.b.len() - self.pos) as u64;
        match major {
            2 | 3 => {
                self.take(arg)?;
            }
            4 | 5 => {
                let items = if major == 5 { arg.saturating_mul(2) } else { arg };
                if items > remaining {
                    return Err("truncated".into());
                }
                for _ in 0..items {
                    self.item(depth + 1)?;
                }
            }
            6 => self.item(depth + 1)?,
            _ => {} // integers, simple values and floats: the head is the item
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const PATH: &str = "/synth/t0001/r0/seg00001.m4s";

    fn key(id: &str) -> TokenKey {
        TokenKey {
            id: id.into(),
            secret: format!("secret-of-{id}-0123456789").into_bytes(),
        }
    }

    fn grant() -> Grant {
        Grant {
            path_prefix: "/synth/t0001/".into(),
            expires_at: NOW + 3600,
            not_before: Some(NOW - 10),
            client_network: None,
            session: Some("sess-42".into()),
        }
    }

    fn one(k: &TokenKey) -> &[TokenKey] {
        std::slice::from_ref(k)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn check(keys: &[TokenKey], token: &str, path: &str) -> Result<Grant, TokenError> {
        verify(keys, token, path, ip("192.0.2.7"), NOW)
    }

    #[test]
    fn a_valid_token_verifies_and_returns_its_grant() {
        let k = key("k1");
        let t = issue(&k, &grant(), NOW);
        assert!(
            t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{t}"
        );
        assert!(t.len() < 200, "compact: {} chars", t.len());
        assert_eq!(check(one(&k), &t, PATH), Ok(grant()));
        assert_eq!(check(one(&k), &t, "/synth/t0001/index.m3u8"), Ok(grant()));
        let minimal = Grant {
            not_before: None,
            session: None,
            ..grant()
        };
        let t = issue(&k, &minimal, NOW);
        assert_eq!(check(&[k], &t, PATH), Ok(minimal));
    }

    #[test]
    fn the_token_is_a_tagged_cose_mac0_cwt() {
        let t = issue(&key("k1"), &grant(), NOW);
        let bytes = B64.decode(&t).unwrap();
        // tag 61 (CWT), tag 17 (COSE_Mac0), array of 4
        assert_eq!(&bytes[..4], &[0xd8, 0x3d, 0xd1, 0x84]);
        let decoded = common_access_token::Token::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.header.key_id(), Some(KeyId::string("k1")));
        assert_eq!(decoded.claims.registered.iat, Some(NOW));
        assert!(decoded.claims.custom.contains_key(&cat_keys::CATU));
    }

    #[test]
    fn expiry_and_not_before_with_and_without_skew() {
        let k = key("k1");
        let g = Grant {
            expires_at: NOW,
            not_before: None,
            ..grant()
        };
        let t = issue(&k, &g, NOW - 100);
        let e = check(one(&k), &t, PATH).unwrap_err();
        assert_eq!(
            e,
            TokenError::Expired {
                expires_at: NOW,
                now: NOW
            }
        );
        assert_eq!((e.status(), e.as_str()), (401, "expired"));
        assert!(verify(one(&k), &t, PATH, ip("192.0.2.7"), NOW - 1).is_ok());
        assert!(verify_with_skew(one(&k), &t, PATH, ip("192.0.2.7"), NOW + 29, 30).is_ok());
        assert!(verify_with_skew(one(&k), &t, PATH, ip("192.0.2.7"), NOW + 30, 30).is_err());

        let g = Grant {
            not_before: Some(NOW + 60),
            ..grant()
        };
        let t = issue(&k, &g, NOW);
        let e = check(one(&k), &t, PATH).unwrap_err();
        assert_eq!(
            e,
            TokenError::NotYetValid {
                not_before: NOW + 60,
                now: NOW
            }
        );
        assert_eq!((e.status(), e.as_str()), (401, "not-yet-valid"));
        assert!(verify_with_skew(one(&k), &t, PATH, ip("192.0.2.7"), NOW + 30, 30).is_ok());
        assert!(verify(&[k], &t, PATH, ip("192.0.2.7"), NOW + 60).is_ok());
    }

    #[test]
    fn scope_matches_on_a_segment_boundary() {
        let k = key("k1");
        for prefix in ["/synth/t0001/", "/synth/t0001"] {
            let t = issue(
                &k,
                &Grant {
                    path_prefix: prefix.into(),
                    ..grant()
                },
                NOW,
            );
            assert!(check(one(&k), &t, PATH).is_ok(), "{prefix}");
            for other in [
                "/synth/t00010/r0/seg00001.m4s",
                "/synth/t0002/r0/seg00001.m4s",
                "/synth/t000/r0/seg00001.m4s",
                "/synth/t0001x",
                "/synth/t0001/../t0002/seg.m4s",
                "/synth/t0001/./seg.m4s",
                "/other/synth/t0001/seg.m4s",
                "/SYNTH/t0001/seg.m4s",
                "",
                "/",
            ] {
                let e = check(one(&k), &t, other).unwrap_err();
                assert!(matches!(e, TokenError::WrongScope { .. }), "{prefix} {other}: {e:?}");
                assert_eq!((e.status(), e.as_str()), (403, "wrong-scope"));
            }
        }
        let t = issue(&k, &grant(), NOW);
        assert_eq!(
            check(&[k], &t, "/synth/t00010/x.m4s"),
            Err(TokenError::WrongScope {
                path: "/synth/t00010/x.m4s".into(),
                prefix: "/synth/t0001/".into()
            })
        );
    }

    #[test]
    fn client_network() {
        let k = key("k1");
        let cases = [
            ("192.0.2.0/24", "192.0.2.7", true),
            ("192.0.2.0/24", "192.0.3.7", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7/32", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.1", true),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::/32", "192.0.2.7", false),
            ("192.0.2.0/24", "2001:db8::1", false),
        ];
        for (net, client, ok) in cases {
            let t = issue(
                &k,
                &Grant {
                    client_network: Some(net.into()),
                    ..grant()
                },
                NOW,
            );
            let r = verify(one(&k), &t, PATH, ip(client), NOW);
            if ok {
                assert_eq!(r.map(|g| g.client_network), Ok(Some(net.to_string())), "{net} {client}");
            } else {
                let e = r.unwrap_err();
                assert_eq!(
                    e,
                    TokenError::WrongNetwork {
                        client: ip(client),
                        network: net.into()
                    }
                );
                assert_eq!((e.status(), e.as_str()), (403, "wrong-network"));
            }
        }
        // A network nobody can parse: refused whoever asks.
        let t = issue(
            &k,
            &Grant {
                client_network: Some("10.0.0.0/33".into()),
                ..grant()
            },
            NOW,
        );
        assert!(matches!(check(&[k], &t, PATH), Err(TokenError::Malformed(_))));
        assert!(!valid_network("nonsense") && !valid_network("::1/129") && valid_network("::1/128"));
    }

    #[test]
    fn unknown_kid_and_wrong_secret() {
        let t = issue(&key("k1"), &grant(), NOW);
        let e = check(&[key("k2")], &t, PATH).unwrap_err();
        assert_eq!(e, TokenError::UnknownKey("k1".into()));
        assert_eq!((e.status(), e.as_str()), (401, "unknown-key"));
        let forged = TokenKey {
            id: "k1".into(),
            secret: b"not-the-real-secret-at-all".to_vec(),
        };
        let e = check(&[forged], &t, PATH).unwrap_err();
        assert_eq!(e, TokenError::BadSignature);
        assert_eq!((e.status(), e.as_str()), (401, "bad-signature"));
        assert_eq!(check(&[], &t, PATH), Err(TokenError::UnknownKey("k1".into())));
    }

    #[test]
    fn rotation_two_keys_both_verify() {
        let (old, new) = (key("2025-01"), key("2025-02"));
        let keys = [old.clone(), new.clone()];
        for k in [&old, &new] {
            assert!(check(&keys, &issue(k, &grant(), NOW), PATH).is_ok(), "{}", k.id);
        }
        // After the old key is retired its tokens stop verifying.
        assert!(matches!(
            check(&[new], &issue(&old, &grant(), NOW), PATH),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_with_any_byte_is_refused() {
        let k = key("k1");
        let g = Grant {
            client_network: Some("192.0.2.0/24".into()),
            ..grant()
        };
        let t = issue(&k, &g, NOW);
        let bytes = B64.decode(&t).unwrap();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let e = check(one(&k), &B64.encode(&b), PATH).unwrap_err();
                assert_eq!(e.status(), 401, "byte {i} ^ {flip:#x}: {e:?}");
            }
        }
        // And in the text: every character replaced by another.
        for i in 0..t.len() {
            let mut s = t.clone().into_bytes();
            s[i] = if s[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(s).unwrap();
            assert!(check(one(&k), &s, PATH).is_err(), "char {i}");
        }
        // Appending anything is refused too (no trailing bytes).
        let mut b = bytes.clone();
        b.push(0);
        assert!(matches!(
            check(one(&k), &B64.encode(&b), PATH),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_and_garbage_are_malformed() {
        let k = key("k1");
        let t = issue(&k, &grant(), NOW);
        for n in 0..t.len() {
            let e = check(one(&k), &t[..n], PATH).unwrap_err();
            assert_eq!(e.status(), 401, "{n}: {e:?}");
            assert!(
                matches!(e, TokenError::Malformed(_) | TokenError::Missing),
                "{n}: {e:?}"
            );
        }
        let bytes = B64.decode(&t).unwrap();
        for n in 0..bytes.len() {
            let e = check(one(&k), &B64.encode(&bytes[..n]), PATH).unwrap_err();
            assert!(
                matches!(e, TokenError::Malformed(_) | TokenError::Missing),
                "{n}: {e:?}"
            );
        }
        for g in [
            "garbage",
            "!!!!",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
            "AAAA",
            "____",
            "/t/x",
            "%41",
            &"A".repeat(MAX_TOKEN_LEN + 1),
        ] {
            let e = check(one(&k), g, PATH).unwrap_err();
            assert!(matches!(e, TokenError::Malformed(_)), "{g}: {e:?}");
            assert_eq!(e.as_str(), "malformed");
        }
        assert_eq!(check(&[k], "", PATH), Err(TokenError::Missing));
        assert_eq!(TokenError::Missing.status(), 401);
    }

    #[test]
    fn hostile_cbor_is_refused_before_the_crate_allocates() {
        let k = key("k1");
        let b64 = |b: &[u8]| B64.encode(b);
        let hostile: Vec<Vec<u8>> = vec![
            // array claiming 2^63 items
            vec![0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            // A payload map whose claim claims an array of 2^61 items: the
            // crate alone panics on this ("capacity overflow"), and with
            // 2^40 items it would try to allocate 32 TiB.
            vec![
                0x84, 0x41, 0xa0, 0xa0, 0x4b, 0xa1, 0x01, 0x9b, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x40,
            ],
            vec![
                0x84, 0x41, 0xa0, 0xa0, 0x4b, 0xa1, 0x01, 0x9b, 0, 0, 1, 0, 0, 0, 0, 0, 0x40,
            ],
            // deep nesting in the unprotected header
            {
                let mut v = vec![0x84, 0x41, 0xa0];
                v.extend(std::iter::repeat_n(0x81u8, 64));
                v.extend([0x00, 0x41, 0xa0, 0x40]);
                v
            },
            // indefinite-length array
            vec![0x9f, 0xff],
            // other tags
            vec![0xd8, 0x3c, 0xd1, 0x84, 0x41, 0xa0, 0xa0, 0x41, 0xa0, 0x40],
            vec![0xd2, 0x84, 0x41, 0xa0, 0xa0, 0x41, 0xa0, 0x40],
            // byte string longer than the input
            vec![0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ];
        for h in &hostile {
            let e = check(one(&k), &b64(h), PATH).unwrap_err();
            assert!(matches!(e, TokenError::Malformed(_)), "{h:x?}: {e:?}");
        }
    }

    #[test]
    fn claims_this_module_does_not_enforce_make_a_token_malformed() {
        let k = key("k1");
        let sign = |b: common_access_token::TokenBuilder| B64.encode(b.sign(&k.secret).unwrap().to_bytes().unwrap());
        let base = || {
            common_access_token::TokenBuilder::new()
                .algorithm(Algorithm::HmacSha256)
                .protected_key_id(KeyId::string("k1"))
                .registered_claims(RegisteredClaims::new().with_expiration(NOW + 60))
        };
        let prefix = |p: &str| {
            CborValue::Map(BTreeMap::from([(
                uri_components::PATH,
                CborValue::Map(BTreeMap::from([(match_types::PREFIX, CborValue::Text(p.into()))])),
            )]))
        };
        assert!(check(
            one(&k),
            &sign(base().custom_cbor(cat_keys::CATU, prefix("/synth/"))),
            PATH
        )
        .is_ok());
        let refused = [
            ("no scope", base()),
            (
                "no expiry",
                common_access_token::TokenBuilder::new()
                    .algorithm(Algorithm::HmacSha256)
                    .protected_key_id(KeyId::string("k1"))
                    .custom_cbor(cat_keys::CATU, prefix("/synth/")),
            ),
            (
                "catm",
                base()
                    .custom_cbor(cat_keys::CATU, prefix("/synth/"))
                    .custom_array(cat_keys::CATM, vec![CborValue::Text("GET".into())]),
            ),
            (
                "regex catu",
                base().custom_cbor(
                    cat_keys::CATU,
                    CborValue::Map(BTreeMap::from([(
                        uri_components::PATH,
                        CborValue::Map(BTreeMap::from([(
                            match_types::REGEX,
                            CborValue::Array(vec![CborValue::Text(".*".into())]),
                        )])),
                    )])),
                ),
            ),
            ("relative prefix", base().custom_cbor(cat_keys::CATU, prefix("synth/"))),
            (
                "two networks",
                base().custom_cbor(cat_keys::CATU, prefix("/synth/")).custom_array(
                    cat_keys::CATNIP,
                    vec![CborValue::Text("10.0.0.0/8".into()), CborValue::Text("::/0".into())],
                ),
            ),
            (
                "binary kid",
                common_access_token::TokenBuilder::new()
                    .algorithm(Algorithm::HmacSha256)
                    .protected_key_id(KeyId::binary(b"k1".to_vec()))
                    .registered_claims(RegisteredClaims::new().with_expiration(NOW + 60))
                    .custom_cbor(cat_keys::CATU, prefix("/synth/")),
            ),
            (
                "unprotected kid",
                common_access_token::TokenBuilder::new()
                    .algorithm(Algorithm::HmacSha256)
                    .unprotected_key_id(KeyId::string("k1"))
                    .registered_claims(RegisteredClaims::new().with_expiration(NOW + 60))
                    .custom_cbor(cat_keys::CATU, prefix("/synth/")),
            ),
        ];
        for (what, b) in refused {
            let e = check(one(&k), &sign(b), PATH).unwrap_err();
            assert!(matches!(e, TokenError::Malformed(_)), "{what}: {e:?}");
        }
    }

    #[test]
    fn extract_from_each_carrier() {
        // Path: stripped, the rest kept as a suffix of the original.
        let tok = issue(&key("k1"), &grant(), NOW);
        let long = format!("{}-_09", "a".repeat(MIN_PATH_TOKEN_LEN - 4));
        for t in [tok.as_str(), long.as_str()] {
            let path = format!("/t/{t}/synth/t0001/r0/index.m3u8");
            let (got, p) = extract(&path, Some("CAT=other"), Some("hdr"));
            assert_eq!((got, p.as_ref()), (Some(t), "/synth/t0001/r0/index.m3u8"));
            assert!(matches!(p, Cow::Borrowed(_)));
        }
        // Not a token: too short, not base64url, nothing after it, or empty.
        // Such paths are left alone (a library directory may be named `t`).
        let short = &long[1..];
        for p in [
            format!("/t/{short}/synth/x"),
            format!("/t/{long}.json/x"),
            format!("/t/{long}"),
            "/t/private.json".to_string(),
            "/t/live.m3u8".to_string(),
            "/t//synth/x".to_string(),
        ] {
            assert_eq!(extract(&p, None, None), (None, Cow::Borrowed(p.as_str())), "{p}");
        }
        assert_eq!(extract(&format!("/t/{short}/x"), Some("CAT=q"), None).0, Some("q"));
        // Query, any case, among other parameters.
        assert_eq!(
            extract("/synth/x", Some("a=1&CAT=tok&b=2"), Some("hdr")),
            (Some("tok"), Cow::Borrowed("/synth/x"))
        );
        assert_eq!(extract("/synth/x", Some("cat=tok"), None).0, Some("tok"));
        assert_eq!(extract("/synth/x", Some("CATS=tok&xCAT=1"), None).0, None);
        // Header.
        assert_eq!(
            extract("/synth/x", Some("a=1"), Some(" tok ")),
            (Some("tok"), Cow::Borrowed("/synth/x"))
        );
        // None, and empties count as none.
        assert_eq!(extract("/synth/x", None, None), (None, Cow::Borrowed("/synth/x")));
        assert_eq!(extract("/synth/x", Some("CAT="), Some("")).0, None);
        assert_eq!(extract("/synth/t/x", None, None).0, None, "only a leading /t/");
        assert_eq!(extract("/tt/x/y", None, None).0, None);
    }

    #[test]
    fn extracted_token_verifies_against_the_stripped_path() {
        let k = key("k1");
        let t = issue(&k, &grant(), NOW);
        let full = format!("/t/{t}{PATH}");
        let (tok, path) = extract(&full, None, None);
        assert_eq!(check(&[k], tok.unwrap(), &path), Ok(grant()));
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", key("k1"));
        assert!(s.contains("k1") && !s.contains("secret-of"), "{s}");
    }
}
