//! Interval counters for the health report: requests, bytes sent (as they
//! are sent, so a long transfer counts in the interval it happens in),
//! bytes served from cache, and requests per title. The reporter takes
//! and resets them once per interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::cache::CacheStatus;

/// Titles tracked per interval; further new titles in the same interval
/// are not counted (the digest is a top-N, not an inventory).
const MAX_TITLES: usize = 10_000;

const SHARDS: usize = 16;

fn shard(title: &str) -> usize {
    // FNV-1a: cheap and needs no per-process random state.
    let h = title.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (h % SHARDS as u64) as usize
}

#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    sent: AtomicU64,
    finished_bytes: AtomicU64,
    hit_bytes: AtomicU64,
    /// Per-title counts, sharded by title so concurrent requests for
    /// different titles rarely meet on one lock.
    titles: [Mutex<HashMap<String, u64>>; SHARDS],
}

/// What happened in one interval.
#[derive(Debug, Default, PartialEq)]
pub struct Interval {
    pub requests: u64,
    pub sent_bytes: u64,
    /// Body bytes of the responses that finished in the interval.
    pub finished_bytes: u64,
    /// Bytes of responses served from a stored copy (hit, stale hit,
    /// revalidated, stale-if-error).
    pub hit_bytes: u64,
    /// Requests per title, most requested first.
    pub top_titles: Vec<(String, u64)>,
}

/// The title of a request path: its first `depth` segments
/// (`/synth/t0001/r0/seg1.m4s` at depth 2 is `synth/t0001`).
pub fn title_of(path: &str, depth: usize) -> Option<&str> {
    let p = path.strip_prefix('/')?;
    let mut end = 0;
    for _ in 0..depth {
        // Each title segment is non-empty and followed by more path: a
        // file at the root, or the title directory itself, names no title.
        let len = p[end..].find('/')?;
        if len == 0 {
            return None;
        }
        end += len + 1;
    }
    (depth > 0).then(|| &p[..end - 1])
}

impl Stats {
    /// Body bytes just sent to a client.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// A finished response.
    pub fn finished(&self, title: Option<&str>, cache: CacheStatus, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.finished_bytes.fetch_add(bytes, Ordering::Relaxed);
        if matches!(
            cache,
            CacheStatus::Hit | CacheStatus::StaleHit | CacheStatus::Revalidated | CacheStatus::StaleOnError
        ) {
            self.hit_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if let Some(t) = title {
            let mut titles = self.titles[shard(t)]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = titles.get_mut(t) {
                *n += 1;
            } else if titles.len() < MAX_TITLES / SHARDS {
                titles.insert(t.to_string(), 1);
            }
        }
    }

    /// Take the counters since the last call, keeping the `top` titles.
    pub fn take(&self, top: usize) -> Interval {
        let mut top_titles: Vec<(String, u64)> = self
            .titles
            .iter()
            .flat_map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .collect();
        top_titles.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top_titles.truncate(top);
        Interval {
            requests: self.requests.swap(0, Ordering::Relaxed),
            sent_bytes: self.sent.swap(0, Ordering::Relaxed),
            finished_bytes: self.finished_bytes.swap(0, Ordering::Relaxed),
            hit_bytes: self.hit_bytes.swap(0, Ordering::Relaxed),
            top_titles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_leading_segments() {
        assert_eq!(title_of("/synth/t0001/r0/seg.m4s", 2), Some("synth/t0001"));
        assert_eq!(title_of("/vod/bbb/master.m3u8", 2), Some("vod/bbb"));
        assert_eq!(title_of("/bbb/master.m3u8", 1), Some("bbb"));
        assert_eq!(title_of("/bbb", 1), None, "a file at the root is not a title");
        assert_eq!(title_of("/synth/t0001", 2), None);
        assert_eq!(title_of("/", 1), None);
        assert_eq!(title_of("//x/y", 1), None);
        assert_eq!(title_of("no-slash", 1), None);
    }

    #[test]
    fn an_interval_takes_and_resets() {
        let s = Stats::default();
        s.sent(100);
        s.finished(Some("a"), CacheStatus::Hit, 60);
        s.finished(Some("b"), CacheStatus::Miss, 40);
        s.finished(Some("b"), CacheStatus::Collapsed, 40);
        s.finished(None, CacheStatus::None, 0);
        let i = s.take(1);
        assert_eq!(i.requests, 4);
        assert_eq!(i.sent_bytes, 100);
        assert_eq!(i.finished_bytes, 140);
        assert_eq!(i.hit_bytes, 60);
        assert_eq!(i.top_titles, vec![("b".to_string(), 2)]);
        assert_eq!(s.take(5), Interval::default());
    }
}
