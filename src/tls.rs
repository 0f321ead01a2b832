//! In-process TLS for the `tls:` listeners: the certificate and key read from PEM files and
//! checked (readable, belonging together, not expired), the resolver that hands every new
//! connection the pair serving now, so that a reload swaps it without a rebind and without
//! touching open connections, and the rustls settings of the listeners.
//!
//! With ACME (`server.tls.acme`) the resolver also answers the CA's `tls-alpn-01` validation
//! (RFC 8737): a handshake that offers only the `acme-tls/1` protocol gets the challenge
//! certificate of the name it asks for, and nothing else is ever served on such a handshake.
//!
//! The crypto provider is rustls's `ring` one, not its default aws-lc-rs: `ring` is already built
//! for reqwest's client, while aws-lc-rs needs cmake and a C toolchain and doubles the build.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The oldest TLS version a `tls:` listener accepts (`server.tls.min_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// A certificate chain and its private key, known to belong together.
pub struct CertificatePair {
    certified: Arc<CertifiedKey>,
    /// The leaf certificate's notBefore.
    not_before: SystemTime,
    /// The leaf certificate's notAfter.
    not_after: SystemTime,
    /// The DNS names of the leaf's subjectAltName, lowercase.
    dns_names: Vec<String>,
    /// The leaf certificate's serial number in hex, to tell certificates apart in the log.
    serial: String,
}

impl fmt::Debug for CertificatePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificatePair")
            .field("serial", &self.serial)
            .field("not_after", &httpdate::fmt_http_date(self.not_after))
            .finish_non_exhaustive()
    }
}

impl CertificatePair {
    /// The leaf certificate's serial number, in lowercase hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// When the leaf certificate starts being valid (its notBefore).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// When the leaf certificate expires (its notAfter).
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Whether the leaf certificate names every one of `domains` (compared without case).
    pub fn covers(&self, domains: &[String]) -> bool {
        domains
            .iter()
            .all(|domain| self.dns_names.contains(&domain.to_ascii_lowercase()))
    }

    /// When the leaf certificate expired (its notAfter, as an HTTP date), if it has by `now`.
    /// An expired pair is still loaded: refusing it would refuse the whole config, and with it
    /// the plain listeners and every hook, over a renewal that failed.
    pub fn expired(&self, now: SystemTime) -> Option<String> {
        (self.not_after <= now).then(|| httpdate::fmt_http_date(self.not_after))
    }

    /// Seconds from `now` until the leaf certificate expires; negative once it has.
    pub fn seconds_left(&self, now: SystemTime) -> f64 {
        match self.not_after.duration_since(now) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        }
    }
}

/// Why a certificate and key cannot serve; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("cannot read `{path}`: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("`{path}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },
    #[error("`{path}` is not a readable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("`{path}` holds no PEM private key (`-----BEGIN PRIVATE KEY-----`)")]
    NoKey { path: PathBuf },
    #[error("`{path}` is not a private key rustls can sign with: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in `{key}` does not belong to the certificate in `{cert}`")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Reads the certificate chain (leaf first) from `cert` and its private key from `key`, both PEM,
/// and checks that they belong together; whether the leaf has expired is
/// [`CertificatePair::expired`].
pub fn load(cert: &Path, key: &Path) -> Result<CertificatePair, PairError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| PairError::Unreadable {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PairError::BadCertificate {
            path: cert.to_path_buf(),
            reason: error.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(PairError::NoCertificate {
            path: cert.to_path_buf(),
        });
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|error| PairError::BadCertificate {
            path: cert.to_path_buf(),
            reason: error.to_string(),
        })?;
    let time = |seconds: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let not_before = time(parsed.validity().not_before.timestamp());
    let not_after = time(parsed.validity().not_after.timestamp());
    let dns_names = match parsed.subject_alternative_name() {
        Ok(Some(names)) => names
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    Some(dns.to_ascii_lowercase())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let serial = hex::encode(parsed.raw_serial());
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
        pem::Error::NoItemsFound => PairError::NoKey {
            path: key.to_path_buf(),
        },
        error => PairError::BadKey {
            path: key.to_path_buf(),
            reason: error.to_string(),
        },
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(private_key)
        .map_err(|error| PairError::BadKey {
            path: key.to_path_buf(),
            reason: error.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; the handshake will show a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(PairError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
    }
    Ok(CertificatePair {
        certified: Arc::new(certified),
        not_before,
        not_after,
        dns_names,
        serial,
    })
}

/// The ALPN protocol of the `tls-alpn-01` challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate every new TLS connection gets: the pair serving now. Replacing it leaves the
/// connections already open as they are. Also holds the `tls-alpn-01` challenge certificates of
/// the names an ACME CA is validating.
#[derive(Debug)]
pub struct Resolver {
    /// `None` only with ACME, until the first certificate is issued: handshakes other than the
    /// CA's validation are then refused, as there is nothing to offer them.
    current: ArcSwapOption<CertificatePair>,
    /// Challenge certificates by lowercase domain name.
    challenges: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl Resolver {
    pub fn new(pair: Arc<CertificatePair>) -> Resolver {
        Resolver {
            current: ArcSwapOption::new(Some(pair)),
            challenges: ArcSwap::default(),
        }
    }

    /// A resolver with no certificate yet: it answers only `tls-alpn-01` validations.
    pub fn waiting_for_acme() -> Resolver {
        Resolver {
            current: ArcSwapOption::empty(),
            challenges: ArcSwap::default(),
        }
    }

    /// The pair serving now; `None` while ACME has not issued the first one.
    pub fn current(&self) -> Option<Arc<CertificatePair>> {
        self.current.load_full()
    }

    /// Serves `pair` to the connections that come next; returns the pair it replaces.
    pub fn replace(&self, pair: Arc<CertificatePair>) -> Option<Arc<CertificatePair>> {
        self.current.swap(Some(pair))
    }

    /// Answers `acme-tls/1` handshakes for `domain` with `certificate` until `clear_challenges`.
    pub fn add_challenge(&self, domain: &str, certificate: Arc<CertifiedKey>) {
        self.challenges.rcu(|challenges| {
            let mut challenges = HashMap::clone(challenges);
            challenges.insert(domain.to_ascii_lowercase(), Arc::clone(&certificate));
            challenges
        });
    }

    /// Drops every challenge certificate, once the CA has validated or given up.
    pub fn clear_challenges(&self) {
        self.challenges.store(Arc::default());
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|protocol| protocol == ACME_TLS_ALPN));
        if validation {
            // RFC 8737 §3: such a handshake gets the challenge certificate of its SNI name or
            // fails; it never gets the served certificate, nor HTTP.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.load().get(&name).cloned();
        }
        self.current
            .load()
            .as_ref()
            .map(|pair| Arc::clone(&pair.certified))
    }
}

/// The rustls settings of every `tls:` listener: TLS 1.3, and 1.2 unless `min_version` is 1.3,
/// with the certificate from `resolver`. actix-web puts its ALPN protocols (`h2`, `http/1.1`)
/// before the ones set here, and rustls picks by the server's order, so a browser still gets
/// `h2` or `http/1.1`; `acme` adds `acme-tls/1`, which only an ACME CA's validation offers.
pub fn server_config(
    resolver: Arc<Resolver>,
    min_version: MinVersion,
    acme: bool,
) -> rustls::ServerConfig {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    if acme {
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    }
    config
}

/// The crypto provider of the listeners and of the ACME challenge certificates.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
