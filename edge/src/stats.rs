//! Interval counters for the health report: requests, bytes sent (as they
//! are sent, so a long transfer counts in the interval it happens in),
//! bytes served from cache, and requests per title. The reporter takes
//! and resets them once per interval.
//!
//! The content digest is not the last interval's titles: each interval's
//! per-title counts are folded into exponentially decayed scores
//! ([`Decayed`], half-life [`digest_half_life`]), so "this edge holds the
//! title" reflects what it served over the last minutes, and a player
//! fetching a segment every few seconds does not make it flip from one
//! report to the next. The decay runs in [`Stats::take`] (the reporter),
//! never on the request path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The digest's half-life: 30 s, or four report intervals when that is
/// longer, so a title stays in the digest across several intervals.
pub fn digest_half_life(interval: Duration) -> Duration {
    Duration::from_secs(30).max(interval.saturating_mul(4))
}

/// Scores below this leave the digest (and memory): a title requested
/// once is forgotten after one half-life, a title a player fetched every
/// 2 s for minutes after about six.
const MIN_SCORE: f64 = 0.5;

/// Per-title request counts decayed exponentially with time: after each
/// half-life a score counts half. Pure: the caller passes `now`.
#[derive(Debug, Default)]
pub struct Decayed {
    scores: HashMap<String, f64>,
    at: Option<Instant>,
}

impl Decayed {
    /// Age every score from the previous call to `now`, then add `counts`.
    /// Scores under [`MIN_SCORE`] are dropped and at most [`MAX_TITLES`]
    /// (the highest) are kept.
    pub fn add(&mut self, counts: impl IntoIterator<Item = (String, u64)>, now: Instant, half_life: Duration) {
        let elapsed = self.at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        let half = half_life.as_secs_f64();
        let factor = if half > 0.0 {
            0.5f64.powf(elapsed.as_secs_f64() / half)
        } else {
            0.0
        };
        if factor < 1.0 {
            for v in self.scores.values_mut() {
                *v *= factor;
            }
        }
        for (title, n) in counts {
            *self.scores.entry(title).or_insert(0.0) += n as f64;
        }
        self.scores.retain(|_, v| *v >= MIN_SCORE);
        if self.scores.len() > MAX_TITLES {
            let mut all: Vec<(String, f64)> = self.scores.drain().collect();
            all.select_nth_unstable_by(MAX_TITLES, |a, b| b.1.total_cmp(&a.1));
            all.truncate(MAX_TITLES);
            self.scores.extend(all);
        }
    }

    /// The `n` highest scores, highest first (ties by title).
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        let mut all: Vec<(String, f64)> = self.scores.iter().map(|(t, v)| (t.clone(), *v)).collect();
        all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
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
    /// The decayed digest; only [`Stats::take`] touches it.
    digest: Mutex<Decayed>,
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
    /// The content digest: titles by decayed request count (this
    /// interval's and, fading, the previous ones'), highest first.
    pub top_titles: Vec<(String, f64)>,
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

    /// Take the counters since the last call; the digest is the `top`
    /// titles after this interval's counts are folded in at `now` with
    /// `half_life` (see [`digest_half_life`]).
    pub fn take(&self, top: usize, now: Instant, half_life: Duration) -> Interval {
        let counts: Vec<(String, u64)> = self
            .titles
            .iter()
            .flat_map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .collect();
        let top_titles = {
            let mut digest = self.digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            digest.add(counts, now, half_life);
            digest.top(top)
        };
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

    const SECOND: Duration = Duration::from_secs(1);
    const HALF: Duration = Duration::from_secs(30);

    #[test]
    fn an_interval_takes_and_resets() {
        let s = Stats::default();
        let t0 = Instant::now();
        s.sent(100);
        s.finished(Some("a"), CacheStatus::Hit, 60);
        s.finished(Some("b"), CacheStatus::Miss, 40);
        s.finished(Some("b"), CacheStatus::Collapsed, 40);
        s.finished(None, CacheStatus::None, 0);
        let i = s.take(1, t0, HALF);
        assert_eq!(i.requests, 4);
        assert_eq!(i.sent_bytes, 100);
        assert_eq!(i.finished_bytes, 140);
        assert_eq!(i.hit_bytes, 60);
        assert_eq!(i.top_titles, vec![("b".to_string(), 2.0)]);
        // The counters reset; the digest remembers (one half-life later, half).
        let i = s.take(5, t0 + HALF, HALF);
        assert_eq!((i.requests, i.sent_bytes, i.finished_bytes, i.hit_bytes), (0, 0, 0, 0));
        assert_eq!(i.top_titles, vec![("b".to_string(), 1.0), ("a".to_string(), 0.5)]);
        // Below the floor a title leaves the digest.
        assert_eq!(s.take(5, t0 + HALF * 2, HALF).top_titles, vec![("b".to_string(), 0.5)]);
    }

    #[test]
    fn a_player_every_two_seconds_stays_in_the_digest_every_second() {
        // The bug this fixes: 2 s segments, 1 s reports. The last interval
        // holds the title every other report; the decayed digest always.
        let s = Stats::default();
        let t0 = Instant::now();
        for k in 0..60u32 {
            if k % 2 == 0 {
                s.finished(Some("vod/bbb"), CacheStatus::Hit, 1);
            }
            if k % 7 == 0 {
                s.finished(Some("vod/other"), CacheStatus::Hit, 1);
            }
            let i = s.take(1, t0 + SECOND * k, digest_half_life(SECOND));
            assert_eq!(i.top_titles[0].0, "vod/bbb", "report {k}: {:?}", i.top_titles);
        }
        // The player left: the title fades out over minutes, not at once.
        let left = t0 + SECOND * 60;
        let at = |secs: u32| {
            s.take(4, left + SECOND * secs, HALF)
                .top_titles
                .iter()
                .any(|(t, _)| t == "vod/bbb")
        };
        assert!(at(1) && at(30) && at(90));
        assert!(!at(400), "gone after enough half-lives");
    }

    #[test]
    fn decay_is_by_time_not_by_calls() {
        let t0 = Instant::now();
        let mut d = Decayed::default();
        d.add([("x".to_string(), 8)], t0, HALF);
        // Many calls with no time passing change nothing.
        for _ in 0..100 {
            d.add([], t0, HALF);
        }
        assert_eq!(d.top(1), vec![("x".to_string(), 8.0)]);
        d.add([], t0 + HALF * 2, HALF);
        assert_eq!(d.top(1), vec![("x".to_string(), 2.0)]);
        // A `now` before the last one (it cannot happen with Instant, but the
        // function must not care) does not grow or panic.
        d.add([], t0, HALF);
        assert_eq!(d.top(1), vec![("x".to_string(), 2.0)]);
        // A zero half-life forgets everything older than now.
        d.add([("y".to_string(), 1)], t0 + HALF * 3, Duration::ZERO);
        assert_eq!(d.top(5), vec![("y".to_string(), 1.0)]);
        assert!(d.top(0).is_empty());
    }

    #[test]
    fn the_digest_ranks_recent_history_and_is_bounded() {
        let t0 = Instant::now();
        let mut d = Decayed::default();
        // "old" was hot a minute ago, "new" is warm now: 40/4 = 10 > 6.
        d.add([("old".to_string(), 40)], t0, HALF);
        d.add([("new".to_string(), 6)], t0 + HALF * 2, HALF);
        assert_eq!(d.top(2), vec![("old".to_string(), 10.0), ("new".to_string(), 6.0)]);
        // Ties by title; never more than MAX_TITLES, the highest kept.
        let many = (0..MAX_TITLES as u64 + 50).map(|i| (format!("t{i:05}"), 1 + i));
        d.add(many, t0 + HALF * 2, HALF);
        assert_eq!(d.scores.len(), MAX_TITLES);
        assert!(!d.scores.contains_key("t00000"), "the lowest went");
        assert_eq!(d.top(1)[0].0, format!("t{:05}", MAX_TITLES + 49));
        let mut e = Decayed::default();
        e.add([("b".to_string(), 1), ("a".to_string(), 1)], t0, HALF);
        assert_eq!(e.top(2), vec![("a".to_string(), 1.0), ("b".to_string(), 1.0)]);
    }

    #[test]
    fn half_life_spans_several_intervals() {
        assert_eq!(digest_half_life(SECOND), HALF);
        assert_eq!(digest_half_life(Duration::from_secs(20)), Duration::from_secs(80));
        assert_eq!(digest_half_life(Duration::MAX), Duration::MAX);
    }
}
