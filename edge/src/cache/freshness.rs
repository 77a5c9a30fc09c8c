//! RFC 9111 freshness for a shared cache: whether a response may be stored,
//! for how long it is fresh, and how long it may be served stale.
//!
//! Pure: every function takes the response head and `now`.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, StatusCode};

/// Knobs for responses that carry no explicit freshness.
#[derive(Debug, Clone, Copy)]
pub struct Heuristic {
    /// Fraction of (Date − Last-Modified) used as lifetime (RFC 9111 §4.2.2
    /// suggests 10%). 0 disables heuristic freshness.
    pub fraction: f64,
    /// Upper bound of a heuristic lifetime.
    pub max: Duration,
}

impl Default for Heuristic {
    fn default() -> Self {
        Self {
            fraction: 0.1,
            max: Duration::from_secs(86_400),
        }
    }
}

/// Why a response is not stored. Doubles as a log/metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Status,
    NoStore,
    Private,
    SetCookie,
    Vary,
    NoFreshness,
    Partial,
    /// Larger than the memory tier admits.
    TooLarge,
}

impl NotStorable {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::Vary => "vary",
            NotStorable::NoFreshness => "no-freshness",
            NotStorable::Partial => "partial",
            NotStorable::TooLarge => "too-large",
        }
    }

    /// May the response still be handed to other requests waiting for the
    /// same fetch? Error statuses and oversized objects are the same for
    /// everyone; private, cookie-setting, varying or unvalidated answers
    /// are not ours to share.
    pub fn shareable(self) -> bool {
        matches!(self, NotStorable::Status | NotStorable::Partial | NotStorable::TooLarge)
    }
}

/// How a stored response ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime (s-maxage, max-age, Expires − Date, or heuristic).
    pub lifetime: Duration,
    /// Age the response already had when it arrived (Age header and Date skew).
    pub initial_age: Duration,
    /// When it was received.
    pub stored_at: SystemTime,
    /// `stale-while-revalidate` window after expiry.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` window after expiry.
    pub stale_if_error: Duration,
    /// `must-revalidate` / `proxy-revalidate`: never serve stale.
    pub must_revalidate: bool,
    /// `immutable`: never revalidate while fresh.
    pub immutable: bool,
}

/// Where a stored response stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Fresh,
    /// Stale; may be served while a revalidation runs in the background.
    StaleWhileRevalidate,
    /// Stale; must be revalidated before use.
    Stale,
}

impl Freshness {
    /// Current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age
            .saturating_add(now.duration_since(self.stored_at).unwrap_or_default())
    }

    pub fn state(&self, now: SystemTime) -> Age {
        let age = self.age(now);
        if age < self.lifetime {
            Age::Fresh
        } else if !self.must_revalidate && age < self.lifetime.saturating_add(self.stale_while_revalidate) {
            Age::StaleWhileRevalidate
        } else {
            Age::Stale
        }
    }

    /// May a stale copy stand in for an upstream error at `now`?
    pub fn usable_on_error(&self, now: SystemTime) -> bool {
        !self.must_revalidate && self.age(now) < self.lifetime.saturating_add(self.stale_if_error)
    }

    /// Reset the clock after a successful revalidation (304) whose headers
    /// carried no freshness of their own.
    pub fn refreshed(&self, now: SystemTime) -> Freshness {
        Freshness {
            stored_at: now,
            initial_age: Duration::ZERO,
            ..*self
        }
    }
}

/// Cache-Control directives we act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Directives {
    no_store: bool,
    private: bool,
    no_cache: bool,
    must_revalidate: bool,
    immutable: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
    swr: Option<u64>,
    sie: Option<u64>,
}

fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (part.trim(), None),
            };
            // Delta-seconds beyond 2^31 mean 2^31 (RFC 9111 §1.2.2).
            let secs = || arg.and_then(delta_seconds);
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                // `private="field"` only restricts those fields; we treat any
                // private as not shareable (conservative).
                "private" => d.private = true,
                "no-cache" => d.no_cache = true,
                "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                "immutable" => d.immutable = true,
                // A malformed max-age makes the response stale (RFC 9111 §4.2.1).
                "max-age" => d.max_age = Some(secs().unwrap_or(0)),
                "s-maxage" => {
                    d.s_maxage = Some(secs().unwrap_or(0));
                    d.must_revalidate = true; // s-maxage implies proxy-revalidate
                }
                "stale-while-revalidate" => d.swr = secs(),
                "stale-if-error" => d.sie = secs(),
                _ => {}
            }
        }
    }
    d
}

/// Largest delta-seconds value honoured (RFC 9111 §1.2.2).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

fn delta_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only overflow can fail, and that means "very large".
    Some(s.parse::<u64>().unwrap_or(MAX_DELTA_SECONDS).min(MAX_DELTA_SECONDS))
}

fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// Status codes a shared cache may store (RFC 9110 §15.1 heuristically
/// cacheable ones plus 203). 206 is never stored: the edge always fills
/// whole objects and answers ranges itself.
fn storable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Decide whether a response may be stored and how it ages.
pub fn freshness(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    heuristic: Heuristic,
) -> Result<Freshness, NotStorable> {
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NotStorable::Partial);
    }
    if !storable_status(status) {
        return Err(NotStorable::Status);
    }
    let d = directives(headers);
    if d.no_store {
        return Err(NotStorable::NoStore);
    }
    if d.private {
        return Err(NotStorable::Private);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    // One variant per key: a response that varies on anything but
    // Accept-Encoding is not stored.
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else {
            return Err(NotStorable::Vary);
        };
        if v.split(',')
            .map(str::trim)
            .any(|f| !f.is_empty() && !f.eq_ignore_ascii_case("accept-encoding"))
        {
            return Err(NotStorable::Vary);
        }
    }
    let date_hdr = date(headers, header::DATE);
    let origin_date = date_hdr.unwrap_or(now);
    let lifetime = if d.no_cache {
        Duration::ZERO
    } else if let Some(s) = d.s_maxage.or(d.max_age) {
        Duration::from_secs(s)
    } else if let Some(exp) = headers.get(header::EXPIRES) {
        // An invalid Expires (e.g. "0") means already expired.
        match exp.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok()) {
            Some(e) => e.duration_since(origin_date).unwrap_or_default(),
            None => Duration::ZERO,
        }
    } else if let (Some(lm), true) = (date(headers, header::LAST_MODIFIED), heuristic.fraction > 0.0) {
        let since = origin_date.duration_since(lm).unwrap_or_default();
        since.mul_f64(heuristic.fraction).min(heuristic.max)
    } else if d.immutable {
        Duration::from_secs(365 * 86_400)
    } else {
        return Err(NotStorable::NoFreshness);
    };
    let apparent = date_hdr.and_then(|dt| now.duration_since(dt).ok()).unwrap_or_default();
    let age_hdr = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| delta_seconds(s.trim()))
        .map(Duration::from_secs)
        .unwrap_or_default();
    Ok(Freshness {
        lifetime,
        initial_age: apparent.max(age_hdr),
        stored_at: now,
        stale_while_revalidate: Duration::from_secs(d.swr.unwrap_or(0)),
        stale_if_error: Duration::from_secs(d.sie.unwrap_or(0)),
        must_revalidate: d.must_revalidate || d.no_cache,
        immutable: d.immutable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }
    fn f(pairs: &[(&str, &str)]) -> Result<Freshness, NotStorable> {
        freshness(StatusCode::OK, &h(pairs), t0(), Heuristic::default())
    }
    fn at(secs: u64) -> SystemTime {
        t0() + Duration::from_secs(secs)
    }

    #[test]
    fn max_age_and_s_maxage() {
        let fr = f(&[("cache-control", "public, max-age=60")]).unwrap();
        assert_eq!(fr.lifetime, Duration::from_secs(60));
        assert_eq!(fr.state(at(59)), Age::Fresh);
        assert_eq!(fr.state(at(60)), Age::Stale);
        let fr = f(&[("cache-control", "max-age=60, s-maxage=5")]).unwrap();
        assert_eq!(fr.lifetime, Duration::from_secs(5));
        assert!(fr.must_revalidate, "s-maxage implies proxy-revalidate");
    }

    #[test]
    fn not_storable() {
        assert_eq!(
            f(&[("cache-control", "no-store, max-age=60")]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            f(&[("cache-control", "private, max-age=60")]),
            Err(NotStorable::Private)
        );
        assert_eq!(
            f(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
            Err(NotStorable::SetCookie)
        );
        assert_eq!(
            f(&[("cache-control", "max-age=60"), ("vary", "User-Agent")]),
            Err(NotStorable::Vary)
        );
        assert!(f(&[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")]).is_ok());
        assert_eq!(f(&[]), Err(NotStorable::NoFreshness));
        let hm = h(&[("cache-control", "max-age=60")]);
        assert_eq!(
            freshness(StatusCode::PARTIAL_CONTENT, &hm, t0(), Heuristic::default()),
            Err(NotStorable::Partial)
        );
        assert_eq!(
            freshness(StatusCode::INTERNAL_SERVER_ERROR, &hm, t0(), Heuristic::default()),
            Err(NotStorable::Status)
        );
        assert!(freshness(StatusCode::NOT_FOUND, &hm, t0(), Heuristic::default()).is_ok());
    }

    #[test]
    fn expires_and_date() {
        let date = httpdate::fmt_http_date(t0());
        let exp = httpdate::fmt_http_date(at(120));
        let fr = f(&[("date", &date), ("expires", &exp)]).unwrap();
        assert_eq!(fr.lifetime, Duration::from_secs(120));
        let fr = f(&[("date", &date), ("expires", "0")]).unwrap();
        assert_eq!(fr.lifetime, Duration::ZERO, "invalid Expires means expired");
        assert_eq!(fr.state(t0()), Age::Stale);
    }

    #[test]
    fn age_header_and_date_skew_count() {
        let fr = f(&[("cache-control", "max-age=60"), ("age", "50")]).unwrap();
        assert_eq!(fr.state(at(9)), Age::Fresh);
        assert_eq!(fr.state(at(10)), Age::Stale);
        let old_date = httpdate::fmt_http_date(t0() - Duration::from_secs(30));
        let fr = f(&[("cache-control", "max-age=60"), ("date", &old_date)]).unwrap();
        assert_eq!(fr.age(t0()), Duration::from_secs(30));
    }

    #[test]
    fn heuristic_from_last_modified() {
        let date = httpdate::fmt_http_date(t0());
        let lm = httpdate::fmt_http_date(t0() - Duration::from_secs(1000));
        let fr = f(&[("date", &date), ("last-modified", &lm)]).unwrap();
        assert_eq!(fr.lifetime, Duration::from_secs(100));
        let off = Heuristic {
            fraction: 0.0,
            max: Duration::ZERO,
        };
        assert_eq!(
            freshness(StatusCode::OK, &h(&[("last-modified", &lm)]), t0(), off),
            Err(NotStorable::NoFreshness)
        );
    }

    #[test]
    fn stale_windows() {
        let fr = f(&[(
            "cache-control",
            "max-age=10, stale-while-revalidate=5, stale-if-error=100",
        )])
        .unwrap();
        assert_eq!(fr.state(at(12)), Age::StaleWhileRevalidate);
        assert_eq!(fr.state(at(15)), Age::Stale);
        assert!(fr.usable_on_error(at(109)));
        assert!(!fr.usable_on_error(at(110)));
        let fr = f(&[(
            "cache-control",
            "max-age=10, must-revalidate, stale-while-revalidate=5, stale-if-error=100",
        )])
        .unwrap();
        assert_eq!(fr.state(at(12)), Age::Stale);
        assert!(!fr.usable_on_error(at(12)));
    }

    #[test]
    fn no_cache_stores_but_always_revalidates() {
        let fr = f(&[("cache-control", "no-cache, max-age=600")]).unwrap();
        assert_eq!(fr.state(t0()), Age::Stale);
    }

    #[test]
    fn immutable_and_refresh() {
        let fr = f(&[("cache-control", "public, max-age=31536000, immutable")]).unwrap();
        assert!(fr.immutable);
        let fr = f(&[("cache-control", "max-age=10")]).unwrap();
        let r = fr.refreshed(at(100));
        assert_eq!(r.state(at(105)), Age::Fresh);
        assert_eq!(r.state(at(110)), Age::Stale);
    }

    #[test]
    fn huge_numbers_are_capped_not_panics() {
        let fr = f(&[
            (
                "cache-control",
                "max-age=99999999999999999999999, stale-if-error=18446744073709551615",
            ),
            ("age", "18446744073709551615"),
        ])
        .unwrap();
        assert_eq!(fr.lifetime, Duration::from_secs(MAX_DELTA_SECONDS));
        let later = t0() + Duration::from_secs(10);
        let _ = fr.state(later);
        let _ = fr.usable_on_error(later);
        assert_eq!(fr.age(later), Duration::from_secs(MAX_DELTA_SECONDS + 10));
    }

    #[test]
    fn shareability() {
        assert!(NotStorable::Status.shareable() && NotStorable::TooLarge.shareable());
        for r in [
            NotStorable::Private,
            NotStorable::NoStore,
            NotStorable::SetCookie,
            NotStorable::Vary,
            NotStorable::NoFreshness,
        ] {
            assert!(!r.shareable(), "{r:?}");
        }
    }

    #[test]
    fn malformed_max_age_is_stale() {
        let fr = f(&[("cache-control", "max-age=abc")]).unwrap();
        assert_eq!(fr.lifetime, Duration::ZERO);
    }
}
