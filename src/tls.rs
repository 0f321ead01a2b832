//! In-process TLS for the `tls:` listeners: the certificate and key read from PEM files and
//! checked (readable, belonging together, not expired), the resolver that hands every new
//! connection the pair serving now, so that a reload swaps it without a rebind and without
//! touching open connections, and the rustls settings of the listeners.
//!
//! The crypto provider is rustls's `ring` one, not its default aws-lc-rs: `ring` is already built
//! for reqwest's client, while aws-lc-rs needs cmake and a C toolchain and doubles the build.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
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
    /// The leaf certificate's notAfter.
    not_after: SystemTime,
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
    let seconds = parsed.validity().not_after.timestamp();
    let not_after = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
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
        not_after,
        serial,
    })
}

/// The certificate every new TLS connection gets: the pair serving now. Replacing it leaves the
/// connections already open as they are.
#[derive(Debug)]
pub struct Resolver {
    current: ArcSwap<CertificatePair>,
}

impl Resolver {
    pub fn new(pair: Arc<CertificatePair>) -> Resolver {
        Resolver {
            current: ArcSwap::new(pair),
        }
    }

    /// The pair serving now.
    pub fn current(&self) -> Arc<CertificatePair> {
        self.current.load_full()
    }

    /// Serves `pair` to the connections that come next; returns the pair it replaces.
    pub fn replace(&self, pair: Arc<CertificatePair>) -> Arc<CertificatePair> {
        self.current.swap(pair)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().certified))
    }
}

/// The rustls settings of every `tls:` listener: TLS 1.3, and 1.2 unless `min_version` is 1.3,
/// with the certificate from `resolver`. actix-web adds the ALPN protocols (`h2`, `http/1.1`).
pub fn server_config(resolver: Arc<Resolver>, min_version: MinVersion) -> rustls::ServerConfig {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver)
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
