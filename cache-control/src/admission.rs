//! Admitting a health report: size, key, signature, timestamp, schema,
//! identity and sequence checks, in that order, as a pure function. A
//! refused report never changes an edge's state.

use std::collections::HashMap;

use outpost_proto::signature::{self, SignatureError};
use outpost_proto::HealthReport;

/// One key of an edge as cache-control knows it: whose it is and its secret.
#[derive(Debug, Clone)]
pub struct EdgeKey {
    pub edge_id: String,
    pub secret: Vec<u8>,
}

/// Credentials by key id. An edge may own several key ids (while its key
/// rotates); a key id belongs to exactly one edge, and a report signed with
/// it must name that edge.
pub type Keys = HashMap<String, EdgeKey>;

/// The signed parts of a report request, as the shell read them.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub key_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// Limits for admission.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    pub max_skew_ms: u64,
}

/// Why a report was refused. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("report body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("missing signature headers")]
    Unsigned,
    #[error("unknown key id or edge")]
    UnknownEdge,
    #[error("{0}")]
    Signature(SignatureError),
    #[error("malformed report: {0}")]
    Malformed(String),
    #[error("report names edge {named} but is signed with the key of {keyed}")]
    WrongEdge { named: String, keyed: String },
    #[error("sequence {seq} is not after {last}")]
    Replay { seq: u64, last: u64 },
}

impl Reject {
    /// HTTP status: 413 too large, 400 malformed, 409 replay, else 401.
    pub fn status(&self) -> u16 {
        match self {
            Reject::TooLarge(_) => 413,
            Reject::Malformed(_) => 400,
            Reject::Replay { .. } => 409,
            _ => 401,
        }
    }

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reject::TooLarge(_) => "too-large",
            Reject::Unsigned => "unsigned",
            Reject::UnknownEdge => "unknown-edge",
            Reject::Signature(e) => e.as_str(),
            Reject::Malformed(_) => "malformed",
            Reject::WrongEdge { .. } => "wrong-edge",
            Reject::Replay { .. } => "replay",
        }
    }
}

/// Admit a report, or say why not. `last_seq` is the highest sequence
/// number accepted from that edge so far.
pub fn admit(
    req: Signed<'_>,
    keys: &Keys,
    last_seq: impl Fn(&str) -> Option<u64>,
    now_ms: u64,
    limits: Limits,
) -> Result<HealthReport, Reject> {
    if req.body.len() > limits.max_body {
        return Err(Reject::TooLarge(req.body.len()));
    }
    let (Some(key_id), Some(ts), Some(sig)) = (req.key_id, req.timestamp, req.signature) else {
        return Err(Reject::Unsigned);
    };
    let key = keys.get(key_id).ok_or(Reject::UnknownEdge)?;
    let ts: u64 = ts
        .trim()
        .parse()
        .map_err(|_| Reject::Signature(SignatureError::Malformed))?;
    signature::verify(&key.secret, ts, req.body, sig, now_ms, limits.max_skew_ms).map_err(Reject::Signature)?;
    let report: HealthReport = serde_json::from_slice(req.body).map_err(|e| Reject::Malformed(e.to_string()))?;
    if report.edge_id != key.edge_id {
        return Err(Reject::WrongEdge {
            named: report.edge_id,
            keyed: key.edge_id.clone(),
        });
    }
    if report.timestamp_ms != ts {
        return Err(Reject::Malformed(
            "timestamp in body differs from the signed timestamp".into(),
        ));
    }
    if let Some(last) = last_seq(&report.edge_id) {
        if report.seq <= last {
            return Err(Reject::Replay { seq: report.seq, last });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::{sign, ContentDigest, TierUsage};

    const NOW: u64 = 1_700_000_000_000;
    const LIMITS: Limits = Limits {
        max_body: 64 << 10,
        max_skew_ms: 5_000,
    };

    /// edge-1 is rotating from k1 to k1b; edge-2 has k2.
    fn keys() -> Keys {
        [("k1", "edge-1", "s1"), ("k1b", "edge-1", "s1b"), ("k2", "edge-2", "s2")]
            .into_iter()
            .map(|(key, edge, secret)| {
                let k = EdgeKey {
                    edge_id: edge.into(),
                    secret: secret.as_bytes().to_vec(),
                };
                (key.to_string(), k)
            })
            .collect()
    }
    fn report(edge: &str, seq: u64) -> Vec<u8> {
        serde_json::to_vec(&HealthReport {
            edge_id: edge.into(),
            site: "ams".into(),
            asns: vec![],
            prefixes: vec![],
            lat: 0.0,
            lon: 0.0,
            urls: vec![],
            capacity_gbps: 1.0,
            max_connections: 1,
            egress_gbps: 0.0,
            connections: 0,
            cpu_load: 0.0,
            memory: TierUsage::default(),
            disk: None,
            hit_ratio: 0.0,
            requests_per_sec: 0.0,
            digest: ContentDigest::default(),
            version: "t".into(),
            draining: false,
            seq,
            timestamp_ms: NOW,
        })
        .unwrap()
    }
    fn go(body: &[u8], key: &str, secret: &[u8], last: Option<u64>) -> Result<HealthReport, Reject> {
        let sig = sign(secret, NOW, body);
        let ts = NOW.to_string();
        admit(
            Signed {
                key_id: Some(key),
                timestamp: Some(&ts),
                signature: Some(&sig),
                body,
            },
            &keys(),
            |_| last,
            NOW,
            LIMITS,
        )
    }

    #[test]
    fn a_good_report_is_admitted() {
        assert_eq!(go(&report("edge-1", 5), "k1", b"s1", Some(4)).unwrap().seq, 5);
        assert!(go(&report("edge-1", 1), "k1", b"s1", None).is_ok());
    }

    #[test]
    fn any_key_of_the_edge_is_accepted_and_no_key_of_another() {
        // Both of edge-1's keys, before and after it switches; the sequence
        // is the edge's, whichever key signed.
        assert_eq!(
            go(&report("edge-1", 5), "k1", b"s1", Some(4)).unwrap().edge_id,
            "edge-1"
        );
        assert_eq!(
            go(&report("edge-1", 6), "k1b", b"s1b", Some(5)).unwrap().edge_id,
            "edge-1"
        );
        assert_eq!(
            go(&report("edge-2", 6), "k2", b"s2", Some(5)).unwrap().edge_id,
            "edge-2"
        );
        assert_eq!(
            go(&report("edge-1", 6), "k1", b"s1", Some(6)).unwrap_err().as_str(),
            "replay",
            "switching keys does not reset the sequence"
        );
        // Another edge's key, even with its right secret, cannot speak for edge-1.
        let e = go(&report("edge-1", 7), "k2", b"s2", None).unwrap_err();
        assert_eq!((e.status(), e.as_str()), (401, "wrong-edge"));
        assert_eq!(
            e,
            Reject::WrongEdge {
                named: "edge-1".into(),
                keyed: "edge-2".into()
            }
        );
        let e = go(&report("edge-2", 7), "k1b", b"s1b", None).unwrap_err();
        assert_eq!(e.as_str(), "wrong-edge");
        // One key id, another key's secret: a bad signature.
        assert_eq!(
            go(&report("edge-1", 7), "k1b", b"s1", None).unwrap_err().as_str(),
            "bad-signature"
        );
    }

    #[test]
    fn refusals_and_their_statuses() {
        let cases: Vec<(Result<HealthReport, Reject>, u16, &str)> = vec![
            (go(&report("edge-1", 5), "k1", b"forged", None), 401, "bad-signature"),
            (go(&report("edge-1", 5), "k9", b"s1", None), 401, "unknown-edge"),
            (go(&report("edge-2", 5), "k1", b"s1", None), 401, "wrong-edge"),
            (go(&report("edge-1", 5), "k1", b"s1", Some(5)), 409, "replay"),
            (go(&report("edge-1", 4), "k1", b"s1", Some(5)), 409, "replay"),
            (go(b"{not json", "k1", b"s1", None), 400, "malformed"),
            (go(&vec![b' '; (64 << 10) + 1], "k1", b"s1", None), 413, "too-large"),
        ];
        for (r, status, label) in cases {
            let e = r.unwrap_err();
            assert_eq!((e.status(), e.as_str()), (status, label), "{e}");
        }
        let body = report("edge-1", 5);
        let sig = sign(b"s1", NOW - 60_000, &body);
        let ts = (NOW - 60_000).to_string();
        let e = admit(
            Signed {
                key_id: Some("k1"),
                timestamp: Some(&ts),
                signature: Some(&sig),
                body: &body,
            },
            &keys(),
            |_| None,
            NOW,
            LIMITS,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.as_str()), (401, "stale-timestamp"));
        let e = admit(
            Signed {
                key_id: None,
                timestamp: None,
                signature: None,
                body: &body,
            },
            &keys(),
            |_| None,
            NOW,
            LIMITS,
        )
        .unwrap_err();
        assert_eq!(e.as_str(), "unsigned");
    }
}
