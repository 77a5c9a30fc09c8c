//! What the cache did for a request: the `Cache-Status` header (RFC 9211)
//! and the `cache` label on metrics and access logs.

/// The cache's part in answering one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from a fresh stored copy.
    Hit,
    /// Served from a stored copy inside its `stale-while-revalidate`
    /// window while a background revalidation runs.
    StaleHit,
    /// This request started the upstream fetch.
    Miss,
    /// This request joined a fetch another request started.
    Collapsed,
    /// A stale copy was revalidated upstream (304 or a new 200).
    Revalidated,
    /// Upstream failed and a stale copy was served (`stale-if-error`).
    StaleOnError,
    /// Known uncacheable: fetched upstream for this request alone.
    Pass,
    /// The request never reached the cache (refused or malformed).
    None,
}

impl CacheStatus {
    pub const ALL: [CacheStatus; 8] = [
        CacheStatus::Hit,
        CacheStatus::StaleHit,
        CacheStatus::Miss,
        CacheStatus::Collapsed,
        CacheStatus::Revalidated,
        CacheStatus::StaleOnError,
        CacheStatus::Pass,
        CacheStatus::None,
    ];

    /// Metric label and access-log word.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::StaleHit => "stale-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Collapsed => "collapsed",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::StaleOnError => "stale-on-error",
            CacheStatus::Pass => "pass",
            CacheStatus::None => "none",
        }
    }

    /// Served without contacting upstream for this request.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            CacheStatus::Hit | CacheStatus::StaleHit | CacheStatus::StaleOnError
        )
    }
}

/// Everything the `Cache-Status` header says about one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: CacheStatus,
    /// Upstream's status code, when upstream was asked.
    pub fwd_status: Option<u16>,
    /// The response was (or is being) stored.
    pub stored: bool,
    /// Seconds of freshness left, for hits.
    pub ttl: Option<i64>,
}

impl Outcome {
    pub fn new(status: CacheStatus) -> Self {
        Self {
            status,
            fwd_status: None,
            stored: false,
            ttl: None,
        }
    }

    /// The RFC 9211 header value, e.g. `outpost; hit; ttl=42` or
    /// `outpost; fwd=miss; fwd-status=200; stored`. `None` when the
    /// cache took no part.
    pub fn header_value(&self, name: &str) -> Option<String> {
        let mut v = String::with_capacity(48);
        v.push_str(name);
        match self.status {
            CacheStatus::None => return None,
            CacheStatus::Hit => v.push_str("; hit"),
            CacheStatus::StaleHit => v.push_str("; hit; detail=stale-while-revalidate"),
            CacheStatus::StaleOnError => v.push_str("; fwd=stale; detail=stale-if-error"),
            CacheStatus::Miss => v.push_str("; fwd=miss"),
            CacheStatus::Collapsed => v.push_str("; fwd=miss; collapsed"),
            CacheStatus::Revalidated => v.push_str("; fwd=stale"),
            CacheStatus::Pass => v.push_str("; fwd=uri-miss; detail=uncacheable"),
        }
        if let Some(s) = self.fwd_status {
            v.push_str(&format!("; fwd-status={s}"));
        }
        if let Some(t) = self.ttl {
            v.push_str(&format!("; ttl={t}"));
        }
        if self.stored {
            v.push_str("; stored");
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        let mut o = Outcome::new(CacheStatus::Hit);
        o.ttl = Some(42);
        assert_eq!(o.header_value("outpost").unwrap(), "outpost; hit; ttl=42");
        let o = Outcome {
            status: CacheStatus::Miss,
            fwd_status: Some(200),
            stored: true,
            ttl: None,
        };
        assert_eq!(
            o.header_value("outpost").unwrap(),
            "outpost; fwd=miss; fwd-status=200; stored"
        );
        let o = Outcome {
            status: CacheStatus::Collapsed,
            fwd_status: Some(200),
            stored: true,
            ttl: None,
        };
        assert_eq!(
            o.header_value("outpost").unwrap(),
            "outpost; fwd=miss; collapsed; fwd-status=200; stored"
        );
        assert_eq!(Outcome::new(CacheStatus::None).header_value("outpost"), None);
        let labels: std::collections::HashSet<_> = CacheStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(labels.len(), CacheStatus::ALL.len());
    }
}
