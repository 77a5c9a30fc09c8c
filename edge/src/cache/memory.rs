//! The memory tier: stored objects bounded by a byte budget.
//!
//! Two policies behind one type. `s3-fifo` (the default) is `quick_cache`,
//! a scan-resistant S3-FIFO/CLOCK-Pro style cache: one-hit objects pass
//! through a small probationary queue instead of flushing the hot set.
//! `lru` is the `lru` crate, kept as the baseline the bench compares with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::key::CacheKey;
use super::object::CachedObject;

/// Eviction policy of the memory tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Scan-resistant S3-FIFO (quick_cache).
    S3Fifo,
    /// Plain least-recently-used (lru crate), the baseline.
    Lru,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::S3Fifo => "s3-fifo",
            Policy::Lru => "lru",
        }
    }
}

type Obj = Arc<CachedObject>;

#[derive(Clone)]
struct Weigh;
impl quick_cache::Weighter<CacheKey, Obj> for Weigh {
    fn weight(&self, _k: &CacheKey, v: &Obj) -> u64 {
        v.weight().max(1)
    }
}

#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);
impl quick_cache::Lifecycle<CacheKey, Obj> for CountEvictions {
    type RequestState = ();
    fn on_evict(&self, _state: &mut (), _key: CacheKey, _val: Obj) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

type Quick = quick_cache::sync::Cache<CacheKey, Obj, Weigh, quick_cache::DefaultHashBuilder, CountEvictions>;

struct LruTier {
    map: lru::LruCache<CacheKey, Obj>,
    bytes: u64,
}

enum Inner {
    Quick(Quick),
    Lru(Mutex<LruTier>),
}

/// A byte-bounded object store.
pub struct MemoryTier {
    inner: Inner,
    capacity: u64,
    evictions: Arc<AtomicU64>,
}

/// Shards of the quick_cache: each shard holds capacity/shards bytes and an
/// object must fit in one shard, so big segments want few shards.
fn shards_for(capacity: u64) -> usize {
    let per_shard = 256 << 20;
    ((capacity / per_shard) as usize)
        .clamp(1, 16)
        .next_power_of_two()
        .min(16)
}

/// Share of each shard for the main (hot) queue; the rest is S3-FIFO's
/// small probationary queue, sized like the paper's 10%.
const HOT_ALLOCATION: f64 = 0.9;

impl MemoryTier {
    pub fn new(policy: Policy, capacity: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let inner = match policy {
            Policy::S3Fifo => {
                let opts = quick_cache::OptionsBuilder::new()
                    .estimated_items_capacity((capacity / (512 << 10)).clamp(16, 1 << 20) as usize)
                    .weight_capacity(capacity)
                    .shards(shards_for(capacity))
                    .hot_allocation(HOT_ALLOCATION)
                    .build()
                    .expect("valid quick_cache options");
                Inner::Quick(Quick::with_options(
                    opts,
                    Weigh,
                    Default::default(),
                    CountEvictions(evictions.clone()),
                ))
            }
            Policy::Lru => Inner::Lru(Mutex::new(LruTier {
                map: lru::LruCache::unbounded(),
                bytes: 0,
            })),
        };
        Self {
            inner,
            capacity,
            evictions,
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Obj> {
        match &self.inner {
            Inner::Quick(c) => c.get(key),
            Inner::Lru(m) => m.lock().expect("lru lock").map.get(key).cloned(),
        }
    }

    /// The heaviest object the tier admits: for s3-fifo, what fits in one
    /// shard's main queue (quick_cache refuses larger ones).
    pub fn max_weight(&self) -> u64 {
        match &self.inner {
            Inner::Quick(c) => {
                ((c.capacity() / shards_for(self.capacity) as u64) as f64 * HOT_ALLOCATION * 0.95) as u64
            }
            Inner::Lru(_) => self.capacity,
        }
    }

    /// Store an object. Objects heavier than [`Self::max_weight`] are not
    /// admitted; returns whether it was.
    pub fn insert(&self, key: CacheKey, obj: Obj) -> bool {
        let w = obj.weight();
        if w > self.max_weight() {
            return false;
        }
        match &self.inner {
            Inner::Quick(c) => {
                c.insert(key, obj);
                true
            }
            Inner::Lru(m) => {
                let mut t = m.lock().expect("lru lock");
                if let Some(old) = t.map.put(key, obj) {
                    t.bytes -= old.weight();
                }
                t.bytes += w;
                while t.bytes > self.capacity {
                    match t.map.pop_lru() {
                        Some((_, old)) => {
                            t.bytes -= old.weight();
                            self.evictions.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
                true
            }
        }
    }

    pub fn remove(&self, key: &CacheKey) {
        match &self.inner {
            Inner::Quick(c) => {
                c.remove(key);
            }
            Inner::Lru(m) => {
                let mut t = m.lock().expect("lru lock");
                if let Some(old) = t.map.pop(key) {
                    t.bytes -= old.weight();
                }
            }
        }
    }

    /// Bytes charged to stored objects.
    pub fn bytes(&self) -> u64 {
        match &self.inner {
            Inner::Quick(c) => c.weight(),
            Inner::Lru(m) => m.lock().expect("lru lock").bytes,
        }
    }

    pub fn objects(&self) -> usize {
        match &self.inner {
            Inner::Quick(c) => c.len(),
            Inner::Lru(m) => m.lock().expect("lru lock").map.len(),
        }
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::ObjectHead;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use std::time::{Duration, SystemTime};

    fn obj(size: usize) -> Obj {
        let fresh = crate::cache::freshness::Freshness {
            lifetime: Duration::from_secs(60),
            initial_age: Duration::ZERO,
            stored_at: SystemTime::UNIX_EPOCH,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            immutable: false,
        };
        let head = Arc::new(ObjectHead::from_upstream(StatusCode::OK, &HeaderMap::new(), Ok(fresh)));
        Arc::new(CachedObject {
            head,
            body: Bytes::from(vec![0u8; size]),
            freshness: fresh,
        })
    }
    fn k(i: usize) -> CacheKey {
        CacheKey::new(&format!("/o/{i}"), None, &[]).unwrap()
    }

    #[test]
    fn stays_within_the_byte_budget() {
        for policy in [Policy::S3Fifo, Policy::Lru] {
            let cap = 10 << 20;
            let tier = MemoryTier::new(policy, cap);
            for i in 0..200 {
                assert!(tier.insert(k(i), obj(300 << 10)), "{policy:?}");
                assert!(tier.bytes() <= cap, "{policy:?}: {} > {cap}", tier.bytes());
            }
            assert!(tier.evictions() > 0, "{policy:?}");
            assert!(tier.objects() < 200);
            assert!(
                tier.objects() > 10,
                "{policy:?}: the budget is used: {}",
                tier.objects()
            );
        }
    }

    #[test]
    fn too_big_is_not_admitted() {
        for policy in [Policy::S3Fifo, Policy::Lru] {
            let tier = MemoryTier::new(policy, 1 << 20);
            assert!(!tier.insert(k(1), obj(2 << 20)), "{policy:?}");
            assert!(tier.get(&k(1)).is_none());
        }
    }

    #[test]
    fn get_remove_replace() {
        for policy in [Policy::S3Fifo, Policy::Lru] {
            let tier = MemoryTier::new(policy, 8 << 20);
            tier.insert(k(1), obj(1000));
            assert_eq!(tier.get(&k(1)).unwrap().body.len(), 1000);
            tier.insert(k(1), obj(2000));
            assert_eq!(tier.get(&k(1)).unwrap().body.len(), 2000);
            assert_eq!(tier.objects(), 1);
            tier.remove(&k(1));
            assert!(tier.get(&k(1)).is_none());
            assert_eq!(tier.bytes(), 0, "{policy:?}");
        }
    }

    #[test]
    fn s3fifo_resists_a_scan() {
        // A hot set that fits, then a one-pass scan of cold objects: the
        // scan-resistant policy keeps more of the hot set than LRU does.
        let kept = |policy| {
            let tier = MemoryTier::new(policy, 4 << 20);
            for _ in 0..4 {
                for i in 0..20 {
                    if tier.get(&k(i)).is_none() {
                        tier.insert(k(i), obj(100 << 10));
                    }
                }
            }
            for i in 1000..1100 {
                tier.insert(k(i), obj(100 << 10));
            }
            (0..20).filter(|i| tier.get(&k(*i)).is_some()).count()
        };
        let (s3, lru) = (kept(Policy::S3Fifo), kept(Policy::Lru));
        assert!(s3 > lru, "s3-fifo kept {s3} of the hot set, lru {lru}");
    }
}
