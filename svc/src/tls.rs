//! TLS material: PEM loading, an SNI resolver that falls back to a default
//! certificate (clients that dial an IP literal send no SNI), and a local
//! CA + leaf generator for loopback use (rustls refuses a self-signed CA used
//! as a server certificate, so we always issue a separate leaf).

use std::collections::HashMap;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why TLS material could not be loaded or made. The operator's fault
/// (paths, file contents) unless noted.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCert { path: PathBuf },
    #[error("{path}: no PEM private key found")]
    NoKey { path: PathBuf },
    #[error("{path}: unsupported private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed (internal): {0}")]
    Generate(String),
    #[error("TLS configuration (internal): {0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Load a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(&pem[..]))
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: path.to_owned() });
    }
    Ok(certs)
}

/// Load a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(&pem[..]))
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey { path: path.to_owned() })
}

/// Load a certificate chain and its key as a rustls `CertifiedKey`.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing = any_supported_type(&key_der).map_err(|e| TlsError::BadKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Chooses a certificate by SNI; clients sending no SNI, or an unknown
/// name, get the default (the first configured) certificate.
#[derive(Debug)]
pub struct CertResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CertResolver {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            default,
            by_name: HashMap::new(),
        }
    }
    pub fn add(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.by_name.insert(name.to_ascii_lowercase(), key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_sni = hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()));
        Some(by_sni.unwrap_or(&self.default).clone())
    }
}

/// A rustls server config with the given ALPN protocols.
pub fn server_config(resolver: Arc<CertResolver>, alpn: &[&[u8]]) -> rustls::ServerConfig {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// A rustls client config trusting the PEM CA bundle at `ca` (or, with
/// `None`, trusting nothing: only useful in tests of refusal).
pub fn client_config(ca: Option<&Path>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for cert in load_certs(ca)? {
            roots.add(cert).map_err(|e| TlsError::Config(e.to_string()))?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// Where `ensure_local_certs` keeps its files.
#[derive(Debug, Clone)]
pub struct LocalCertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl LocalCertPaths {
    /// `ca.crt`, `ca.key`, `<name>.crt`, `<name>.key` in `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

/// The names every local leaf carries besides the ones asked for.
pub const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Make sure a local CA and a leaf signed by it exist at `paths`; existing
/// files are kept (so certificates survive restarts). A new CA is only made
/// when there is none; a new leaf when the leaf files are missing.
/// Returns true when something was generated.
pub fn ensure_local_certs(paths: &LocalCertPaths, extra_names: &[String]) -> Result<bool, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    if paths.cert.exists() && paths.key.exists() {
        return Ok(false);
    }
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let write = |path: &Path, data: &str| -> Result<(), TlsError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| TlsError::Write {
                path: path.to_owned(),
                source,
            })?;
        }
        fs::write(path, data).map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Outpost local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = if paths.ca_cert.exists() && paths.ca_key.exists() {
        // Re-issue a leaf from the existing CA: the CA key and subject are all
        // an issuer needs, and the subject is ours.
        let pem = fs::read_to_string(&paths.ca_key).map_err(|source| TlsError::Read {
            path: paths.ca_key.clone(),
            source,
        })?;
        KeyPair::from_pem(&pem).map_err(gen)?
    } else {
        let key = KeyPair::generate().map_err(gen)?;
        let ca = ca_params.self_signed(&key).map_err(gen)?;
        write(&paths.ca_cert, &ca.pem())?;
        write(&paths.ca_key, &key.serialize_pem())?;
        key
    };
    let issuer = Issuer::new(ca_params, ca_key);
    let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
    for n in extra_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut leaf_params = CertificateParams::new(names).map_err(gen)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "Outpost local service");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    let leaf_key = KeyPair::generate().map_err(gen)?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(gen)?;
    // The chain served is leaf + CA so clients given only the CA verify it.
    let ca_pem = fs::read_to_string(&paths.ca_cert).map_err(|source| TlsError::Read {
        path: paths.ca_cert.clone(),
        source,
    })?;
    write(&paths.cert, &format!("{}{}", leaf.pem(), ca_pem))?;
    write(&paths.key, &leaf_key.serialize_pem())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_leaf_loads_and_is_not_a_ca() {
        let dir = std::env::temp_dir().join(format!("outpost-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let paths = LocalCertPaths::in_dir(&dir, "edge");
        assert!(ensure_local_certs(&paths, &["127.0.1.1".into()]).unwrap());
        assert!(!ensure_local_certs(&paths, &[]).unwrap(), "existing files are kept");
        let key = load_certified_key(&paths.cert, &paths.key).unwrap();
        assert_eq!(key.cert.len(), 2, "leaf + CA");
        // A client trusting only the CA accepts the server config.
        client_config(Some(&paths.ca_cert), &[b"h2"]).unwrap();
        // Re-issuing the leaf from the kept CA works.
        fs::remove_file(&paths.cert).unwrap();
        assert!(ensure_local_certs(&paths, &[]).unwrap());
        load_certified_key(&paths.cert, &paths.key).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_files_are_clear_errors() {
        let err = load_certs(Path::new("/nonexistent/x.crt")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/x.crt"), "{err}");
    }
}

/// The `[tls]` section of a server config (edge, cache-control, steering).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain (leaf first). Required. Relative paths are
    /// relative to the working directory.
    pub cert: PathBuf,
    /// PEM private key. Required.
    pub key: PathBuf,
    /// When the files are missing, generate a local CA (`ca.crt`/`ca.key`
    /// beside `cert`) and a leaf for localhost, 127.0.0.1, ::1, the listen
    /// address and `names`. For loopback use only. Default: false.
    #[serde(default)]
    pub generate: bool,
    /// Extra DNS names / IPs for a generated leaf. Default: none.
    #[serde(default)]
    pub names: Vec<String>,
    /// More certificates chosen by SNI; clients without SNI (or with an
    /// unknown name) get `cert`. Default: none.
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

/// A certificate served for one SNI name.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Server name this certificate answers for.
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServerTls {
    /// Load (and with `generate`, first create) the certificates into a
    /// resolver. `listen_ip` goes into a generated leaf's names.
    pub fn resolver(&self, listen_ip: std::net::IpAddr) -> Result<Arc<CertResolver>, TlsError> {
        if self.generate {
            let dir = self.cert.parent().map(PathBuf::from).unwrap_or_default();
            let paths = LocalCertPaths {
                ca_cert: dir.join("ca.crt"),
                ca_key: dir.join("ca.key"),
                cert: self.cert.clone(),
                key: self.key.clone(),
            };
            let mut names = self.names.clone();
            names.push(listen_ip.to_string());
            if ensure_local_certs(&paths, &names)? {
                tracing::info!(cert = %paths.cert.display(), ca = %paths.ca_cert.display(), "generated a local CA and leaf certificate");
            }
        }
        let mut resolver = CertResolver::new(load_certified_key(&self.cert, &self.key)?);
        for sni in &self.sni {
            resolver.add(&sni.name, load_certified_key(&sni.cert, &sni.key)?);
        }
        Ok(Arc::new(resolver))
    }
}
