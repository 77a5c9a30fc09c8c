//! `outpost bench hit-ratio`: replay a request sequence through the edge's
//! memory tier (`outpost_edge::cache::MemoryTier`, in-process) once per
//! policy (`lru`, the baseline, and `s3-fifo`, the default) and compare
//! object and byte hit ratios.
//!
//! The sequence is a Zipf workload (exponent, catalog size, object sizes
//! uniform in a range, optionally a share of one-hit objects that are
//! never asked for again, like a crawler or a long tail) or a trace file
//! with one `key size` per line. A miss inserts the object, as the edge
//! does after a fill; every request counts, from a cold cache.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use outpost_edge::cache::{CacheKey, CachedObject, Freshness, MemoryTier, ObjectHead, Policy};
use serde::Serialize;

use crate::report::{f, write_json, Header, Table};
use crate::zipf::{Rng, Zipf};
use crate::Common;

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    pub common: Common,
    /// Zipf exponents, one workload each. Default: 0.8,1.0 (quick: 0.8).
    #[arg(long, value_delimiter = ',')]
    pub alpha: Vec<f64>,
    /// Share of requests for one-hit objects (asked once, never again),
    /// one workload each. Default: 0,0.3 (quick: 0.3).
    #[arg(long, value_delimiter = ',')]
    pub one_hit: Vec<f64>,
    /// Objects in the Zipf catalog. Default: 10000 (quick: 1000).
    #[arg(long)]
    pub objects: Option<usize>,
    /// Requests per workload. Default: 1000000 (quick: 20000).
    #[arg(long)]
    pub requests: Option<usize>,
    /// Smallest object, bytes. Default: 500000.
    #[arg(long, default_value_t = 500_000)]
    pub min_size: u64,
    /// Largest object, bytes (sizes are uniform in between). Default: 6000000.
    #[arg(long, default_value_t = 6_000_000)]
    pub max_size: u64,
    /// Cache sizes as fractions of the catalog's bytes (of the trace's
    /// distinct bytes). Default: 0.01,0.05,0.1,0.2 (quick: 0.1).
    #[arg(long, value_delimiter = ',')]
    pub cache: Vec<f64>,
    /// Replay this trace instead of Zipf workloads: one `key size` per line
    /// (`#` comments and blank lines ignored).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Seed of the workload generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// A request sequence over interned keys.
struct Workload {
    name: String,
    alpha: Option<f64>,
    one_hit: Option<f64>,
    keys: Vec<CacheKey>,
    sizes: Vec<u64>,
    requests: Vec<u32>,
    /// Bytes of the objects asked for more than once could ever hit: the
    /// Zipf catalog's bytes, or a trace's distinct bytes.
    reference_bytes: u64,
}

fn key(name: &str) -> CacheKey {
    CacheKey::new(&format!("/{name}"), None, &[]).unwrap_or_else(|_| {
        // Not a usable path (dot segments, NUL): key it by a hash instead.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        CacheKey::new(&format!("/h/{h:016x}"), None, &[]).expect("hex path is a key")
    })
}

/// A Zipf(`alpha`) workload over `objects` objects with sizes uniform in
/// `[min, max]`, a share `one_hit` of the requests going to new objects.
fn zipf(o: &Opts, alpha: f64, one_hit: f64, objects: usize, requests: usize) -> Workload {
    let mut rng = Rng(o.seed ^ alpha.to_bits() ^ one_hit.to_bits().rotate_left(17));
    let size = |rng: &mut Rng| o.min_size + rng.next_u64() % (o.max_size - o.min_size + 1);
    let popularity = Zipf::new(objects, alpha);
    let mut keys: Vec<CacheKey> = (0..objects).map(|i| key(&format!("o/{i}"))).collect();
    let mut sizes: Vec<u64> = (0..objects).map(|_| size(&mut rng)).collect();
    let reference_bytes = sizes.iter().sum();
    let mut seq = Vec::with_capacity(requests);
    for _ in 0..requests {
        if one_hit > 0.0 && rng.unit() < one_hit {
            seq.push(keys.len() as u32);
            keys.push(key(&format!("once/{}", keys.len())));
            sizes.push(size(&mut rng));
        } else {
            seq.push(popularity.sample(&mut rng) as u32);
        }
    }
    Workload {
        name: format!("zipf a={alpha} one-hit={one_hit}"),
        alpha: Some(alpha),
        one_hit: Some(one_hit),
        keys,
        sizes,
        requests: seq,
        reference_bytes,
    }
}

/// A trace of `key size` lines.
fn trace(path: &std::path::Path) -> Result<Workload> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut ids = std::collections::HashMap::new();
    let (mut keys, mut sizes, mut seq) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(k), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{}:{}: expected `key size`", path.display(), n + 1);
        };
        let size: u64 = s
            .parse()
            .with_context(|| format!("{}:{}: size {s:?}", path.display(), n + 1))?;
        let id = *ids.entry(k.to_owned()).or_insert_with(|| {
            keys.push(key(k));
            sizes.push(size);
            keys.len() - 1
        });
        seq.push(id as u32);
    }
    if seq.is_empty() {
        bail!("{}: no requests", path.display());
    }
    let reference_bytes = sizes.iter().sum();
    Ok(Workload {
        name: format!("trace {}", path.display()),
        alpha: None,
        one_hit: None,
        keys,
        sizes,
        requests: seq,
        reference_bytes,
    })
}

/// A body of `len` bytes without allocating: a slice of one leaked zeroed
/// buffer (whose pages are never touched).
fn body(len: u64) -> Bytes {
    static ZEROS: OnceLock<&'static [u8]> = OnceLock::new();
    const MAX: usize = 1 << 30;
    let zeros = ZEROS.get_or_init(|| Box::leak(vec![0u8; MAX].into_boxed_slice()));
    Bytes::from_static(&zeros[..(len as usize).min(MAX)])
}

#[derive(Debug, Clone, Serialize)]
struct Replay {
    workload: String,
    alpha: Option<f64>,
    one_hit: Option<f64>,
    cache_fraction: f64,
    cache_bytes: u64,
    policy: &'static str,
    requests: u64,
    object_hit_ratio: f64,
    byte_hit_ratio: f64,
    /// Misses the tier refused to store (heavier than it admits).
    not_admitted: u64,
    seconds: f64,
}

fn replay(w: &Workload, policy: Policy, fraction: f64) -> Replay {
    let capacity = (w.reference_bytes as f64 * fraction) as u64;
    let tier = MemoryTier::new(policy, capacity);
    let fresh = Freshness {
        lifetime: Duration::from_secs(1 << 30),
        initial_age: Duration::ZERO,
        stored_at: SystemTime::UNIX_EPOCH,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        must_revalidate: false,
        immutable: true,
    };
    let head = Arc::new(ObjectHead::from_upstream(
        http::StatusCode::OK,
        &http::HeaderMap::new(),
        Ok(fresh),
    ));
    let started = std::time::Instant::now();
    let (mut hits, mut hit_bytes, mut bytes, mut refused) = (0u64, 0u64, 0u64, 0u64);
    for &id in &w.requests {
        let (k, size) = (&w.keys[id as usize], w.sizes[id as usize]);
        bytes += size;
        if tier.get(k).is_some() {
            hits += 1;
            hit_bytes += size;
        } else {
            let obj = CachedObject {
                head: head.clone(),
                body: body(size),
                freshness: fresh,
            };
            if !tier.insert(k.clone(), Arc::new(obj)) {
                refused += 1;
            }
        }
    }
    let n = w.requests.len() as u64;
    Replay {
        workload: w.name.clone(),
        alpha: w.alpha,
        one_hit: w.one_hit,
        cache_fraction: fraction,
        cache_bytes: capacity,
        policy: policy.as_str(),
        requests: n,
        object_hit_ratio: hits as f64 / n as f64,
        byte_hit_ratio: hit_bytes as f64 / bytes.max(1) as f64,
        not_admitted: refused,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[derive(Debug, Serialize)]
struct Output {
    #[serde(flatten)]
    header: Header,
    objects: Option<usize>,
    requests_per_workload: Vec<usize>,
    min_size: u64,
    max_size: u64,
    seed: u64,
    replays: Vec<Replay>,
}

pub async fn run(o: Opts) -> Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(o)).await?
}

fn run_blocking(o: Opts) -> Result<()> {
    let quick = o.common.quick;
    if o.min_size == 0 || o.max_size < o.min_size {
        bail!("--min-size must be at least 1 and at most --max-size");
    }
    let pick = |v: &Vec<f64>, full: &[f64], q: &[f64]| -> Vec<f64> {
        if !v.is_empty() {
            v.clone()
        } else if quick {
            q.to_vec()
        } else {
            full.to_vec()
        }
    };
    let alphas = pick(&o.alpha, &[0.8, 1.0], &[0.8]);
    let one_hits = pick(&o.one_hit, &[0.0, 0.3], &[0.3]);
    let fractions = pick(&o.cache, &[0.01, 0.05, 0.1, 0.2], &[0.1]);
    if one_hits.iter().any(|x| !(0.0..1.0).contains(x)) || fractions.iter().any(|x| *x <= 0.0) {
        bail!("--one-hit must be in [0, 1) and --cache above 0");
    }
    let objects = o.objects.unwrap_or(if quick { 1000 } else { 10_000 }).max(1);
    let requests = o.requests.unwrap_or(if quick { 20_000 } else { 1_000_000 }).max(1);
    let header = Header::new("hit-ratio", quick);

    let workloads: Vec<Workload> = match &o.trace {
        Some(path) => vec![trace(path)?],
        None => alphas
            .iter()
            .flat_map(|&a| one_hits.iter().map(move |&h| (a, h)))
            .map(|(a, h)| zipf(&o, a, h, objects, requests))
            .collect(),
    };
    let jobs: Vec<(usize, f64, Policy)> = (0..workloads.len())
        .flat_map(|w| fractions.iter().map(move |&c| (w, c)))
        .flat_map(|(w, c)| [Policy::Lru, Policy::S3Fifo].map(|p| (w, c, p)))
        .collect();
    println!(
        "{} workload(s) × {} cache size(s) × 2 policies, {} requests each",
        workloads.len(),
        fractions.len(),
        workloads.first().map_or(0, |w| w.requests.len())
    );

    // One job per thread at a time; each job owns its tier.
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut replays: Vec<Replay> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(w, c, p)) = jobs.get(i) else { break };
                        out.push((i, replay(&workloads[w], p, c)));
                    }
                    out
                })
            })
            .collect();
        let mut all: Vec<(usize, Replay)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("replay thread"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });

    let mut t = Table::new(&[
        "workload",
        "cache",
        "objects lru",
        "objects s3-fifo",
        "Δ points",
        "bytes lru",
        "bytes s3-fifo",
        "Δ points",
    ]);
    for pair in replays.chunks(2) {
        let [lru, s3] = pair else { continue };
        t.row(vec![
            lru.workload.clone(),
            format!(
                "{}% ({:.0} MiB)",
                lru.cache_fraction * 100.0,
                lru.cache_bytes as f64 / f64::from(1u32 << 20)
            ),
            f(lru.object_hit_ratio * 100.0, 2),
            f(s3.object_hit_ratio * 100.0, 2),
            f((s3.object_hit_ratio - lru.object_hit_ratio) * 100.0, 2),
            f(lru.byte_hit_ratio * 100.0, 2),
            f(s3.byte_hit_ratio * 100.0, 2),
            f((s3.byte_hit_ratio - lru.byte_hit_ratio) * 100.0, 2),
        ]);
    }
    println!("\nhit ratios in percent; Δ = s3-fifo − lru\n{}", t.render());

    let sane = replays.iter().all(|r| {
        r.requests > 0 && (0.0..=1.0).contains(&r.object_hit_ratio) && (0.0..=1.0).contains(&r.byte_hit_ratio)
    }) && replays.iter().any(|r| r.object_hit_ratio > 0.0);
    replays
        .iter_mut()
        .for_each(|r| r.seconds = (r.seconds * 1e3).round() / 1e3);
    let out = Output {
        header,
        objects: o.trace.is_none().then_some(objects),
        requests_per_workload: workloads.iter().map(|w| w.requests.len()).collect(),
        min_size: o.min_size,
        max_size: o.max_size,
        seed: o.seed,
        replays,
    };
    write_json(&o.common.json_path("hit-ratio"), &out)?;
    if !sane {
        bail!("hit ratios out of range or no hit at all");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        o: Opts,
    }

    fn opts(args: &[&str]) -> Opts {
        Cli::parse_from(std::iter::once("x").chain(args.iter().copied())).o
    }

    #[test]
    fn zipf_is_skewed_and_deterministic() {
        let o = opts(&[]);
        let a = zipf(&o, 1.0, 0.0, 100, 10_000);
        let b = zipf(&o, 1.0, 0.0, 100, 10_000);
        assert_eq!(a.requests, b.requests);
        let top = a.requests.iter().filter(|&&i| i == 0).count();
        let tail = a.requests.iter().filter(|&&i| i == 99).count();
        assert!(top > 10 * tail.max(1), "rank 1 {top} vs rank 100 {tail}");
        assert!(a.sizes.iter().all(|s| (500_000..=6_000_000).contains(s)));
    }

    #[test]
    fn one_hit_objects_are_asked_once() {
        let w = zipf(&opts(&[]), 0.8, 0.5, 50, 2_000);
        assert!(w.keys.len() > 500, "new keys were added: {}", w.keys.len());
        let mut seen = std::collections::HashMap::new();
        for &id in &w.requests {
            *seen.entry(id).or_insert(0) += 1;
        }
        assert!(seen.iter().filter(|(id, _)| **id >= 50).all(|(_, n)| *n == 1));
    }

    #[test]
    fn a_cache_larger_than_the_catalog_misses_only_once_per_object() {
        let w = zipf(&opts(&[]), 0.8, 0.0, 20, 2_000);
        for p in [Policy::Lru, Policy::S3Fifo] {
            let r = replay(&w, p, 2.0);
            let distinct = w.requests.iter().collect::<std::collections::HashSet<_>>().len();
            assert_eq!(
                r.requests - (r.object_hit_ratio * 2_000.0).round() as u64,
                distinct as u64,
                "{p:?}"
            );
        }
    }

    #[test]
    fn traces_parse() {
        let dir = std::env::temp_dir().join(format!("outpost-bench-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.txt");
        std::fs::write(&p, "# key size\na 10\nb 20\n\na 10\n../x 5\n").unwrap();
        let w = trace(&p).unwrap();
        assert_eq!(w.requests, vec![0, 1, 0, 2]);
        assert_eq!(w.reference_bytes, 35);
        std::fs::write(&p, "a\n").unwrap();
        assert!(trace(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
