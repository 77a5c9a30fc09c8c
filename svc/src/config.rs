//! Loading one TOML config file per service.
//!
//! Every service config is a serde struct with `deny_unknown_fields`; this
//! module turns the three ways a config can be wrong (unreadable, not valid
//! TOML / unknown key / wrong type, a value that parses but makes no sense)
//! into one error that names the file, the key and the reason.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config value that parsed but is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key path, e.g. `cache.memory.capacity`.
    pub key: String,
    /// Why the value is refused, written for the operator.
    pub reason: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Semantic checks that serde cannot express.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Why a config file was refused. The operator's fault in every case.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: key `{key}`: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
}

/// Read, parse and validate a config file.
pub fn load_config<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_config(path, &text)
}

/// Parse and validate config text; `path` is only used in errors.
pub fn parse_config<T: DeserializeOwned + Validate>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let value: T = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: describe_toml_error(text, &e),
    })?;
    value
        .validate()
        .map_err(|Invalid { key, reason }| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            reason,
        })?;
    Ok(value)
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let reason = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} (`{snippet}`): {reason}")
        }
        None => reason,
    }
}

/// Serde helpers for human-friendly config values.
pub mod de {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Parse `"250ms"`, `"5s"`, `"2m"`, `"1h"` or a bare number of seconds.
    pub fn parse_duration(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
            Some(i) => s.split_at(i),
            None => (s, "s"),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration like 500ms, 5s, 2m"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("`{s}` is not a valid duration"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// Parse `"64MiB"`, `"2GB"`, `"512k"` or a bare number of bytes.
    pub fn parse_bytes(s: &str) -> Result<u64, String> {
        let s = s.trim();
        let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
            Some(i) => s.split_at(i),
            None => (s, ""),
        };
        let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size like 64MiB"))?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "kib" => 1024.0,
            "m" | "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "g" | "gb" => 1e9,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            u => return Err(format!("`{s}`: unknown unit `{u}` (use B, KiB, MiB, GiB, kB, MB, GB)")),
        };
        Ok((n * mult) as u64)
    }

    /// A shared secret: the literal string, or `file:/path` to read it
    /// from a file (trailing newline trimmed). At least 16 bytes.
    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = match s.strip_prefix("file:") {
            Some(path) => {
                let mut b = std::fs::read(path)
                    .map_err(|e| serde::de::Error::custom(format!("cannot read secret file {path}: {e}")))?;
                while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
                    b.pop();
                }
                b
            }
            None => s.into_bytes(),
        };
        if bytes.len() < 16 {
            return Err(serde::de::Error::custom("a secret must be at least 16 bytes"));
        }
        Ok(bytes)
    }

    /// An optional [`secret`] (use with `#[serde(default)]`).
    pub fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        secret(d).map(Some)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(Duration::from_secs(n)),
            NumOrStr::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        }
    }

    pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(n),
            NumOrStr::Str(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be parsed
    struct Demo {
        listen: std::net::SocketAddr,
        #[serde(default, deserialize_with = "de::bytes")]
        size: u64,
    }
    impl Validate for Demo {
        fn validate(&self) -> Result<(), Invalid> {
            if self.size > 10 {
                return Err(Invalid::new("size", "must be at most 10 bytes"));
            }
            Ok(())
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse_config::<Demo>(Path::new("x.toml"), "listen = \"127.0.0.1:1\"\nlisten_typo = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("listen_typo"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = parse_config::<Demo>(Path::new("x.toml"), "listen = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("listen"), "{err}");
        let err = parse_config::<Demo>(Path::new("x.toml"), "listen = \"127.0.0.1:1\"\nsize = \"1MiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `size`") && err.contains("at most 10"), "{err}");
    }

    #[test]
    fn units() {
        assert_eq!(de::parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(de::parse_bytes("2 GB").unwrap(), 2_000_000_000);
        assert!(de::parse_bytes("5 parsecs").is_err());
        assert_eq!(de::parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(de::parse_duration("2m").unwrap().as_secs(), 120);
        assert!(de::parse_duration("-1s").is_err());
    }
}
