//! The local certificate authority: CA lifecycle (init, load, never overwritten silently) and
//! per-host leaf certificates issued on demand, signed with one ECDSA P-256 leaf key and cached.
//! Every failure is a [`CaError`]; nothing here panics.
pub mod trust;

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// File name of the CA private key inside the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the bundle (system roots + gate's CA) handed to children.
pub const CHILD_BUNDLE_FILE: &str = "ca-bundle.pem";
/// Most leaf certificates kept in memory.
pub const LEAF_CACHE_SIZE: usize = 1024;
/// Leaf validity (total, including the backdating); browsers accept at most ~398 days, Apple
/// 825, and a short life limits the harm of a leaked leaf key.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(198 * 24 * 3600);
/// How far leaves are backdated, to survive small clock skew between gate and its clients.
pub const LEAF_BACKDATE: Duration = Duration::from_secs(3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const CA_COMMON_NAME: &str = "gate local interception CA";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "a CA already exists in {dir} (refusing to overwrite it; remove {cert} and {key} first \
         if you really want a new one)"
    )]
    Exists {
        dir: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    #[error("no CA in {dir}: run `gate ca init` first")]
    Missing { dir: PathBuf },
    #[error("CA file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("CA file {path} is not valid: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("cannot issue a certificate for `{host}`: {why}")]
    Issue { host: String, why: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

fn gen_err(e: impl std::fmt::Display) -> CaError {
    CaError::Generate(e.to_string())
}

struct CachedLeaf {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
}

/// gate's CA, loaded, with its leaf key and leaf cache. Share it behind an `Arc`.
pub struct Ca {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Certificate,
    issuer_key: KeyPair,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    cache: Mutex<lru::LruCache<String, CachedLeaf>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Generate("no system randomness".into()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    Ok(SerialNumber::from_slice(&bytes))
}

/// Unix permission bits of a file; None where the platform has none (Windows uses ACLs).
fn unix_mode(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Sets Unix permission bits (no-op elsewhere).
fn set_unix_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(path).map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

impl Ca {
    /// Path of the CA certificate in `dir`.
    pub fn cert_path_in(dir: &Path) -> PathBuf {
        dir.join(CA_CERT_FILE)
    }

    /// Path of the CA key in `dir`.
    pub fn key_path_in(dir: &Path) -> PathBuf {
        dir.join(CA_KEY_FILE)
    }

    /// True when `dir` holds a CA certificate or key (complete or not).
    pub fn exists_in(dir: &Path) -> bool {
        Self::cert_path_in(dir).exists() || Self::key_path_in(dir).exists()
    }

    /// Makes a new CA in `dir` (created 0700 if missing). Refuses if one is already there.
    pub fn init(dir: &Path) -> Result<Self, CaError> {
        let cert = Self::cert_path_in(dir);
        let key = Self::key_path_in(dir);
        if Self::exists_in(dir) {
            return Err(CaError::Exists {
                dir: dir.to_path_buf(),
                cert,
                key,
            });
        }
        {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|source| CaError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, "gate");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = offset(now - Duration::from_secs(3600));
        params.not_after = offset(now + CA_VALIDITY);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key_pair).map_err(gen_err)?;
        // Key first, exclusively: a crash between the two leaves an incomplete CA that `init`
        // refuses to overwrite and `load` reports, never a certificate without its key.
        write_new(&key, key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_new(&Self::cert_path_in(dir), cert.pem().as_bytes(), 0o644)?;
        Self::load(dir)
    }

    /// Loads the CA from `dir`; the key file must not be readable by group or others.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = Self::cert_path_in(dir);
        let key_path = Self::key_path_in(dir);
        if !Self::exists_in(dir) {
            return Err(CaError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CaError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let meta = std::fs::metadata(&key_path).map_err(|source| CaError::Io {
            path: key_path.clone(),
            source,
        })?;
        if let Some(mode) = unix_mode(&meta)
            && mode & 0o077 != 0
        {
            return Err(CaError::KeyMode {
                path: key_path,
                mode,
            });
        }
        let key_pem = read(&key_path)?;
        let cert_pem = read(&cert_path)?;
        let invalid = |path: &Path, why: String| CaError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        let issuer_key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(&key_path, format!("not a private key ({e})")))?;
        let parsed = pem::parse(&cert_pem)
            .map_err(|e| invalid(&cert_path, format!("not a PEM certificate ({e})")))?;
        let cert_der = CertificateDer::from(parsed.contents().to_vec());
        let params = CertificateParams::from_ca_cert_der(&cert_der)
            .map_err(|e| invalid(&cert_path, format!("not a CA certificate ({e})")))?;
        // Rebuilt with the same name and key: what rcgen needs to sign as this issuer.
        let issuer = params
            .self_signed(&issuer_key)
            .map_err(|e| invalid(&key_path, format!("key does not fit the certificate ({e})")))?;
        let stored_spki = spki_of(&cert_der)
            .ok_or_else(|| invalid(&cert_path, "cannot read its public key".into()))?;
        if stored_spki != issuer_key.public_key_der() {
            return Err(invalid(
                &key_path,
                format!("key does not belong to {}", cert_path.display()),
            ));
        }
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let leaf_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_ecdsa_type(&leaf_der).map_err(gen_err)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der,
            issuer,
            issuer_key,
            leaf_key,
            leaf_signer,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(LEAF_CACHE_SIZE).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// Loads the CA in `dir`, making one first if there is none at all.
    pub fn load_or_init(dir: &Path) -> Result<Self, CaError> {
        if Self::exists_in(dir) {
            Self::load(dir)
        } else {
            Self::init(dir)
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self) -> PathBuf {
        Self::cert_path_in(&self.dir)
    }

    pub fn key_path(&self) -> PathBuf {
        Self::key_path_in(&self.dir)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The leaf certificate and key for `host` (a DNS name or an IP literal, brackets allowed),
    /// from the cache or freshly issued.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let host = normalize(host);
        let now = SystemTime::now();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(&host)
                && c.not_after > now + Duration::from_secs(24 * 3600)
            {
                return Ok(c.key.clone());
            }
        }
        let key = self.issue(&host, now)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(
            host,
            CachedLeaf {
                key: key.clone(),
                not_after: now - LEAF_BACKDATE + LEAF_VALIDITY,
            },
        );
        Ok(key)
    }

    /// Issues a new leaf for an already normalized host, bypassing the cache.
    pub fn issue(&self, host: &str, now: SystemTime) -> Result<Arc<CertifiedKey>, CaError> {
        let issue_err = |why: String| CaError::Issue {
            host: host.to_string(),
            why,
        };
        if host.is_empty() || host.len() > 253 {
            return Err(issue_err("not a valid host name".into()));
        }
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e| issue_err(format!("not a valid DNS name ({e})")))?,
            ),
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // Common names are limited to 64 characters; the SAN is what clients check.
        dn.push(
            DnType::CommonName,
            host.chars().take(64).collect::<String>(),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = vec![san];
        // No basicConstraints at all: an explicit `cA FALSE` is a DER default that strict parsers
        // (Python cryptography) reject.
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_before = now - LEAF_BACKDATE;
        params.not_before = offset(not_before);
        params.not_after = offset(not_before + LEAF_VALIDITY);
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer, &self.issuer_key)
            .map_err(|e| issue_err(e.to_string()))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            self.leaf_signer.clone(),
        )))
    }
}

/// Lower-cases, drops a trailing dot and IPv6 brackets.
fn normalize(host: &str) -> String {
    let h = host.trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.to_ascii_lowercase()
}

/// The SubjectPublicKeyInfo of a DER certificate, found by walking the DER just far enough.
fn spki_of(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial, sigAlg,
    //   issuer, validity, subject, subjectPublicKeyInfo, ... } ... }
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8], usize)> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, hdr) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len)?;
        let body = b.get(hdr..end)?;
        Some((tag, body, b.get(end..)?, end))
    }
    let (_, cert_body, _, _) = tlv(cert)?;
    let (_, mut tbs, _, _) = tlv(cert_body)?;
    let (tag, _, rest, _) = tlv(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // explicit version
    }
    for _ in 0..5 {
        let (_, _, rest, _) = tlv(tbs)?; // serial, sigAlg, issuer, validity, subject
        tbs = rest;
    }
    let (_, _, _, whole) = tlv(tbs)?;
    Some(tbs.get(..whole)?.to_vec())
}

/// Writes `dir/ca-bundle.pem` (mode 0644): the system's root certificates followed by gate's
/// CA, for clients that take one bundle file. Replaces an older bundle atomically.
pub fn write_child_bundle(ca: &Ca, dir: &Path) -> Result<PathBuf, CaError> {
    let path = dir.join(CHILD_BUNDLE_FILE);
    let io = |p: &Path, source| CaError::Io {
        path: p.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut text = String::new();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec())));
    }
    text.push_str("# gate local interception CA\n");
    text.push_str(ca.cert_pem());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let tmp = dir.join(format!(".{CHILD_BUNDLE_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, text.as_bytes()).map_err(|e| io(&tmp, e))?;
    set_unix_mode(&tmp, 0o644).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// The environment a child needs to trust gate's CA: the bundle for OpenSSL-, Python-, curl- and
/// git-based clients, and gate's CA alone for Node (which adds it to its own roots).
pub fn child_env(bundle: &Path, ca_cert: &Path) -> Vec<(String, String)> {
    let b = bundle.display().to_string();
    vec![
        ("SSL_CERT_FILE".into(), b.clone()),
        ("REQUESTS_CA_BUNDLE".into(), b.clone()),
        ("CURL_CA_BUNDLE".into(), b.clone()),
        ("GIT_SSL_CAINFO".into(), b),
        ("NODE_EXTRA_CA_CERTS".into(), ca_cert.display().to_string()),
    ]
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_key_0600_and_refuses_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::init(d.path()).unwrap();
        let mode = std::fs::metadata(ca.key_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(ca.cert_path()).unwrap();
        assert!(matches!(Ca::init(d.path()), Err(CaError::Exists { .. })));
        assert_eq!(std::fs::read(ca.cert_path()).unwrap(), before);
        let again = Ca::load_or_init(d.path()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
    }

    #[test]
    fn loose_key_mode_refused() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::init(d.path()).unwrap();
        std::fs::set_permissions(ca.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Ca::load(d.path()), Err(CaError::KeyMode { .. })));
    }

    #[test]
    fn missing_and_mismatched() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Ca::load(d.path()), Err(CaError::Missing { .. })));
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Ca::init(a.path()).unwrap();
        Ca::init(b.path()).unwrap();
        std::fs::remove_file(Ca::cert_path_in(b.path())).unwrap();
        std::fs::copy(Ca::cert_path_in(a.path()), Ca::cert_path_in(b.path())).unwrap();
        assert!(matches!(Ca::load(b.path()), Err(CaError::Invalid { .. })));
    }

    #[test]
    fn leaves_verify_against_the_ca() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::init(d.path()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        for host in ["example.com", "127.0.0.1", "[::1]", "Sub.Example.COM."] {
            let leaf = ca.leaf(host).unwrap();
            let name = rustls::pki_types::ServerName::try_from(normalize(host)).unwrap();
            verifier
                .verify_server_cert(
                    &leaf.cert[0],
                    &[],
                    &name,
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        // Cached: the same Arc comes back.
        assert!(Arc::ptr_eq(
            &ca.leaf("example.com").unwrap(),
            &ca.leaf("EXAMPLE.com").unwrap()
        ));
        // A leaf for one name does not cover another.
        let leaf = ca.leaf("a.test").unwrap();
        let other = rustls::pki_types::ServerName::try_from("b.test").unwrap();
        assert!(
            verifier
                .verify_server_cert(
                    &leaf.cert[0],
                    &[],
                    &other,
                    &[],
                    rustls::pki_types::UnixTime::now()
                )
                .is_err()
        );
    }

    /// Regression: rcgen's `ExplicitNoCa` writes `cA FALSE`, a DER default that Python's
    /// cryptography (and so mitmproxy and others) refuse to parse. Leaves carry no
    /// basicConstraints extension at all.
    #[test]
    fn leaf_has_no_explicit_basic_constraints() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::init(d.path()).unwrap();
        let leaf = ca.leaf("strict.test").unwrap();
        let der: &[u8] = leaf.cert[0].as_ref();
        let basic_constraints_oid = [0x06, 0x03, 0x55, 0x1d, 0x13];
        assert!(!der.windows(5).any(|w| w == basic_constraints_oid));
    }

    #[test]
    fn bad_host_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::init(d.path()).unwrap();
        assert!(ca.leaf("").is_err());
        assert!(ca.leaf(&"a".repeat(300)).is_err());
    }

    #[test]
    fn child_bundle_and_env() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::init(d.path()).unwrap();
        let bundle = write_child_bundle(&ca, d.path()).unwrap();
        let text = std::fs::read_to_string(&bundle).unwrap();
        assert!(text.contains(ca.cert_pem().trim()));
        let mode = std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let env = child_env(&bundle, &ca.cert_path());
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("GIT_SSL_CAINFO").unwrap(), bundle.display().to_string());
        assert_eq!(
            get("NODE_EXTRA_CA_CERTS").unwrap(),
            ca.cert_path().display().to_string()
        );
    }
}
