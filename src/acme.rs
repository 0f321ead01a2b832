//! Certificates from an ACME CA (`server.tls.acme`; Let's Encrypt by default): the account and
//! the certificate kept under `state_dir/acme/`, the order with the `tls-alpn-01` challenge
//! answered on the `tls:` listener itself (so no port 80), and renewal before expiry.
//!
//! The TLS listener is up from the start, because the CA validates by connecting to it. With a
//! kept certificate that is still good for the domains, that certificate serves at once. Without
//! one, the listener answers only the CA's `acme-tls/1` handshakes and refuses the others (there
//! is no certificate to offer them) until the first certificate is issued: a self-signed
//! placeholder would only teach clients to skip verification.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::backoff::Backoff;
use crate::tls::{self, CertificatePair, Resolver};

/// Let's Encrypt's production directory, the default `directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How long before its notAfter a certificate is renewed (a third of its lifetime if shorter).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The first wait after a failed order, doubling up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);

/// How long the CA gets to validate the challenges, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// `server.tls.acme`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names the certificate is for, lowercase; the first one is its subject.
    pub domains: Vec<String>,
    /// Where the CA sends notices about the account, if anywhere.
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// A PEM certificate to trust for the directory's HTTPS instead of the system's roots.
    pub ca_roots: Option<PathBuf>,
}

/// The files kept under `state_dir/acme/` (the folder is mode 0700, the files 0600).
#[derive(Clone, Debug)]
pub struct KeptFiles {
    dir: PathBuf,
}

impl KeptFiles {
    pub fn new(state_dir: &Path) -> KeptFiles {
        KeptFiles {
            dir: state_dir.join("acme"),
        }
    }

    fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The kept certificate, if it is readable, unexpired at `now` and names every domain.
    pub fn certificate(&self, domains: &[String], now: SystemTime) -> Option<CertificatePair> {
        let pair = tls::load(&self.cert(), &self.key())
            .ok()
            .filter(|pair| pair.expired(now).is_none())?;
        pair.covers(domains).then_some(pair)
    }

    fn create_dir(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed: `RENEW_BEFORE` before
/// it expires, or after two thirds of its lifetime when that comes first (short-lived ones).
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_after - RENEW_BEFORE.min(lifetime / 3)
}

/// Keeps `resolver` serving a valid certificate for `settings.domains`: orders one now if it has
/// none, then renews each at `renew_at`, retrying failures with backoff while the old one serves.
pub async fn run(resolver: Arc<Resolver>, settings: AcmeSettings, files: KeptFiles) {
    let backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut failed_tries = 0;
    loop {
        if let Some(pair) = resolver.current() {
            let due = renew_at(pair.not_before(), pair.not_after());
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tracing::info!(
                serial = pair.serial(),
                renew_at = %httpdate::fmt_http_date(due),
                "ACME certificate serving"
            );
            tokio::time::sleep(wait).await;
        }
        tracing::info!(domains = ?settings.domains, "ordering a certificate from the ACME CA");
        let result = order(&resolver, &settings, &files).await;
        resolver.clear_challenges();
        match result {
            Ok(pair) => {
                failed_tries = 0;
                tracing::info!(
                    serial = pair.serial(),
                    not_after = %httpdate::fmt_http_date(pair.not_after()),
                    "ACME certificate issued; new connections get it"
                );
                resolver.replace(Arc::new(pair));
            }
            Err(error) => {
                failed_tries += 1;
                let wait = backoff.delay(failed_tries, &mut rand::thread_rng());
                tracing::error!(
                    error = format!("{error:#}"),
                    retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())),
                    "ACME order failed"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Orders a certificate for `settings.domains`, answering `tls-alpn-01` through `resolver`, and
/// keeps it (with its key) once it has been read back and checked.
async fn order(
    resolver: &Resolver,
    settings: &AcmeSettings,
    files: &KeptFiles,
) -> anyhow::Result<CertificatePair> {
    files
        .create_dir()
        .with_context(|| format!("cannot create `{}`", files.dir.display()))?;
    let account = account(settings, files).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|domain| Identifier::Dns(domain.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .context("the CA refused the order")?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.context("cannot read an authorization")?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => anyhow::bail!("an authorization is {status:?}, not pending"),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::TlsAlpn01)
            .context("the CA offers no `tls-alpn-01` challenge")?;
        let domain = challenge.identifier().to_string();
        let certificate = challenge_certificate(&domain, challenge.key_authorization().digest())?;
        resolver.add_challenge(&domain, certificate);
        challenge
            .set_ready()
            .await
            .context("cannot tell the CA the challenge is ready")?;
    }
    let retries = RetryPolicy::new().timeout(VALIDATION_TIMEOUT);
    let status = order
        .poll_ready(&retries)
        .await
        .context("the CA did not validate the domains")?;
    if status != OrderStatus::Ready {
        anyhow::bail!("the order is {status:?} after validation; see the CA's authorizations");
    }
    let key_pem = order.finalize().await.context("the CA refused the CSR")?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .context("the CA did not issue the certificate")?;
    keep(files, chain_pem.as_bytes(), key_pem.as_bytes())
}

/// The account for `settings.directory`: the kept one, or a new one (then kept).
async fn account(settings: &AcmeSettings, files: &KeptFiles) -> anyhow::Result<Account> {
    let builder = || match &settings.ca_roots {
        Some(roots) => Account::builder_with_root(roots)
            .with_context(|| format!("cannot trust `{}` for the ACME CA", roots.display())),
        None => Account::builder().context("cannot set up the HTTPS client for the ACME CA"),
    };
    if let Ok(kept) = std::fs::read(files.account()) {
        let kept: KeptAccount = serde_json::from_slice(&kept)
            .with_context(|| format!("`{}` is not an account", files.account().display()))?;
        if kept.directory == settings.directory {
            return builder()?
                .from_credentials(kept.credentials)
                .await
                .context("cannot reach the ACME CA with the kept account");
        }
        tracing::info!("`directory` changed: creating an account with the new ACME CA");
    }
    let contact = settings
        .email
        .as_ref()
        .map(|email| format!("mailto:{email}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .context("the ACME CA refused a new account")?;
    let kept = KeptAccount {
        directory: settings.directory.clone(),
        credentials,
    };
    write_private(&files.account(), &serde_json::to_vec(&kept)?)?;
    tracing::info!(id = account.id(), "ACME account created");
    Ok(account)
}

/// `account.json`: the credentials, and the directory they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The self-signed certificate that answers the `tls-alpn-01` challenge for `domain`: the name
/// and, in the critical acmeIdentifier extension, the SHA-256 of the key authorization.
fn challenge_certificate(
    domain: &str,
    digest: impl AsRef<[u8]>,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .context("cannot make a challenge certificate")?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
    let key = rcgen::KeyPair::generate().context("cannot make a challenge key")?;
    let certificate = params
        .self_signed(&key)
        .context("cannot sign a challenge certificate")?;
    let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = tls::provider()
        .key_provider
        .load_private_key(private_key)
        .context("cannot load a challenge key")?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(certificate.der().to_vec())],
        signing_key,
    )))
}

/// Writes the new certificate and key beside the kept ones, checks that they serve, then puts
/// them in place; a bad pair never replaces a good one.
fn keep(files: &KeptFiles, chain_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertificatePair> {
    let (new_cert, new_key) = (
        files.dir.join("cert.pem.new"),
        files.dir.join("key.pem.new"),
    );
    write_private(&new_cert, chain_pem)?;
    write_private(&new_key, key_pem)?;
    let pair = tls::load(&new_cert, &new_key).context("the CA's certificate cannot serve")?;
    // The key first: a crash between the two renames leaves a mismatched pair, which is then
    // not taken at start, and a new one is ordered.
    std::fs::rename(&new_key, files.key()).context("cannot keep the ACME key")?;
    std::fs::rename(&new_cert, files.cert()).context("cannot keep the ACME certificate")?;
    Ok(pair)
}

/// Writes `bytes` to `path`, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn check(lifetime_days: u64, expected_days_before: u64) {
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAY);
        let not_after = not_before + Duration::from_secs(lifetime_days * DAY);
        assert_eq!(
            renew_at(not_before, not_after),
            not_after - Duration::from_secs(expected_days_before * DAY),
            "a certificate valid {lifetime_days} days"
        );
    }

    #[test]
    fn renewal_comes_30_days_before_expiry_or_after_two_thirds_of_a_short_lifetime() {
        check(90, 30);
        check(365, 30);
        check(5 * 365, 30);
        check(60, 20);
        check(6, 2);
        check(0, 0);
    }

    #[test]
    fn a_certificate_issued_after_it_expires_is_renewed_at_once() {
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * DAY);
        let not_before = not_after + Duration::from_secs(DAY);
        assert_eq!(renew_at(not_before, not_after), not_after);
    }
}
