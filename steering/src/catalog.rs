//! The titles steering may hand out, with their territory and plan rules,
//! and the checks a play request must pass. Pure.

use serde::Deserialize;

/// One title (`[[catalog.titles]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Title {
    /// Title id players ask for. Required.
    pub id: String,
    /// Path prefix of the title at the edges (and the token's scope),
    /// starting and ending with `/`, e.g. `/vod/bbb/`. Required.
    pub path: String,
    /// HLS multivariant playlist, relative to `path`. Default: `master.m3u8`.
    #[serde(default = "default_hls")]
    pub hls: Option<String>,
    /// DASH MPD, relative to `path`. Default: none.
    #[serde(default)]
    pub dash: Option<String>,
    /// ISO country codes where the title is licensed. Default: everywhere.
    #[serde(default)]
    pub territories: Vec<String>,
    /// Subscriber plans that include the title. Default: every plan.
    #[serde(default)]
    pub plans: Vec<String>,
}

fn default_hls() -> Option<String> {
    Some("master.m3u8".into())
}

/// A generated catalog matching the origin's synthetic titles
/// (`[catalog.synthetic]`): ids `t0000`.. at `<prefix>/tNNNN/`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Synthetic {
    /// Path prefix on the origin. Default: `/synth`.
    #[serde(default = "default_synth_prefix")]
    pub prefix: String,
    /// How many titles. Required.
    pub titles: u32,
}

fn default_synth_prefix() -> String {
    "/synth".into()
}

/// The `[catalog]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Titles with their rules. Default: none.
    #[serde(default)]
    pub titles: Vec<Title>,
    /// Synthetic titles, playable everywhere by every plan. Default: none.
    #[serde(default)]
    pub synthetic: Option<Synthetic>,
}

/// Why a play request is refused. The client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown title `{0}`")]
    UnknownTitle(String),
    #[error("title `{title}` is not licensed in {country}")]
    Territory { title: String, country: String },
    #[error("title `{title}` is not licensed where the client is (country unknown)")]
    UnknownCountry { title: String },
    #[error("entitlement: {0}")]
    Entitlement(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownTitle(_) => 404,
            _ => 403,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::UnknownTitle(_) => "unknown-title",
            Refusal::Territory { .. } | Refusal::UnknownCountry { .. } => "territory",
            Refusal::Entitlement(_) => "entitlement",
        }
    }
}

impl CatalogConfig {
    /// Look a title up by id.
    pub fn title(&self, id: &str) -> Option<Title> {
        if let Some(t) = self.titles.iter().find(|t| t.id == id) {
            return Some(t.clone());
        }
        let s = self.synthetic.as_ref()?;
        let n: u32 = id.strip_prefix('t').filter(|d| d.len() == 4)?.parse().ok()?;
        (n < s.titles && id[1..].bytes().all(|b| b.is_ascii_digit())).then(|| Title {
            id: id.to_string(),
            path: format!("{}/{id}/", s.prefix.trim_end_matches('/')),
            hls: default_hls(),
            dash: None,
            territories: vec![],
            plans: vec![],
        })
    }

    /// Check the catalog's rules for one request.
    /// `plans`: the subscriber's plans, or None for a trusted backend
    /// (which has done its own entitlement check).
    pub fn check(&self, id: &str, country: Option<&str>, plans: Option<&[String]>) -> Result<Title, Refusal> {
        let t = self.title(id).ok_or_else(|| Refusal::UnknownTitle(id.to_string()))?;
        if !t.territories.is_empty() {
            match country {
                None => return Err(Refusal::UnknownCountry { title: t.id }),
                Some(c) if !t.territories.iter().any(|x| x.eq_ignore_ascii_case(c)) => {
                    return Err(Refusal::Territory {
                        title: t.id,
                        country: c.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(plans) = plans {
            if !t.plans.is_empty() && !plans.iter().any(|p| t.plans.contains(p)) {
                return Err(Refusal::Entitlement(format!(
                    "title `{}` needs plan {:?}, the subscriber has {plans:?}",
                    t.id, t.plans
                )));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> CatalogConfig {
        toml::from_str(
            r#"
[[titles]]
id = "bbb"
path = "/vod/bbb/"
dash = "manifest.mpd"
territories = ["NL", "DE"]
plans = ["premium"]
[synthetic]
titles = 10
"#,
        )
        .unwrap()
    }

    #[test]
    fn titles_territories_and_plans() {
        let c = catalog();
        let premium = vec!["premium".to_string()];
        let basic = vec!["basic".to_string()];
        let t = c.check("bbb", Some("nl"), Some(&premium)).unwrap();
        assert_eq!((t.path.as_str(), t.hls.as_deref()), ("/vod/bbb/", Some("master.m3u8")));
        assert_eq!(c.check("nope", Some("NL"), None).unwrap_err().status(), 404);
        let e = c.check("bbb", Some("US"), Some(&premium)).unwrap_err();
        assert_eq!((e.status(), e.as_str()), (403, "territory"));
        assert_eq!(c.check("bbb", None, None).unwrap_err().as_str(), "territory");
        let e = c.check("bbb", Some("DE"), Some(&basic)).unwrap_err();
        assert_eq!((e.status(), e.as_str()), (403, "entitlement"));
        assert!(
            c.check("bbb", Some("DE"), None).is_ok(),
            "a trusted backend checked plans itself"
        );
    }

    #[test]
    fn synthetic_titles_follow_the_origin_naming() {
        let c = catalog();
        assert_eq!(c.title("t0009").unwrap().path, "/synth/t0009/");
        for bad in ["t0010", "t009", "t00001", "t-001", "T0001", "t00a1", "x0001"] {
            assert!(c.title(bad).is_none(), "{bad}");
        }
        assert!(c.check("t0003", None, Some(&[])).is_ok(), "no rules: anyone, anywhere");
    }
}
