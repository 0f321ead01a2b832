//! `hookrunner sign`: sign a body the way a provider would; `send` signs through the same `Signer`.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::config::secret;
use crate::request::IdSource;
use crate::secret::Secrets;
use crate::signature::{self, Algorithm, Encoding, ProviderSettings};

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The provider whose headers to make: github, gitlab, gitea, bitbucket, stripe, slack, standard, shopify, scalr, hmac, token.
    #[arg(long)]
    pub provider: String,
    /// The secret: a literal, or `env:NAME`, `file:PATH` so it stays out of the shell history.
    #[arg(long, env = "HOOKRUNNER_SECRET")]
    pub secret: String,
    /// The body: `@FILE`, `-` for standard input, or the text itself. Empty when left out.
    #[arg(long)]
    pub data: Option<String>,
    /// The delivery or message id (Standard Webhooks signs it; others send it as their delivery header).
    #[arg(long)]
    pub id: Option<String>,
    /// The Unix time to sign with (Stripe, Slack, Standard Webhooks, Scalr); now when left out.
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// `hmac` and `token`: the header that carries the signature or the token.
    #[arg(long, default_value = "X-Signature")]
    pub signature_header: String,
    /// `hmac`: sha1, sha256 or sha512.
    #[arg(long, default_value = "sha256")]
    pub algorithm: String,
    /// `hmac`: hex or base64.
    #[arg(long, default_value = "hex")]
    pub encoding: String,
    /// `hmac`: text before the signature, such as `sha256=`.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

/// A body and the provider that signs it, with the delivery id fixed once, so every try of a
/// `send` carries the same id and body.
pub(super) struct Signer {
    provider: Box<dyn signature::Provider>,
    pub(super) body: Vec<u8>,
    id: String,
    id_given: bool,
    event: Option<String>,
    /// `--timestamp`: every signature uses it; otherwise each uses the time it is made.
    timestamp: Option<i64>,
}

impl Signer {
    pub(super) fn new(args: &SignArgs, event: Option<&str>) -> Result<Signer, String> {
        let body = read_data(args.data.as_deref())?;
        let lookup = |name: &str| std::env::var(name).ok();
        let (secret, _) = secret::resolve(&args.secret, Path::new("."), &lookup)
            .map_err(|e| format!("--secret: {e}"))?;
        let mut settings = ProviderSettings::new(&args.provider, Secrets(vec![secret]));
        settings.header = Some(args.signature_header.clone());
        settings.prefix = Some(args.prefix.clone());
        settings.algorithm =
            Some(Algorithm::parse(&args.algorithm).ok_or("--algorithm is sha1, sha256 or sha512")?);
        settings.encoding = Some(match args.encoding.as_str() {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            _ => return Err("--encoding is hex or base64".into()),
        });
        let provider = signature::build(settings)?;
        let id = args
            .id
            .clone()
            .unwrap_or_else(|| format!("msg_{:024x}", rand::random::<u128>() >> 32));
        Ok(Signer {
            provider,
            body,
            id,
            id_given: args.id.is_some(),
            event: event.map(str::to_string),
            timestamp: args.timestamp,
        })
    }

    /// The headers the provider would send now (or at `--timestamp`).
    pub(super) fn headers(&self) -> Vec<(String, String)> {
        let timestamp = self.timestamp.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs() as i64)
        });
        let mut headers = self.provider.sign(&self.body, &self.id, timestamp);
        if self.id_given {
            add_header(&mut headers, self.provider.delivery_sources(), &self.id);
        }
        if let Some(event) = &self.event {
            add_header(&mut headers, self.provider.event_sources(), event);
        }
        headers
    }
}

pub fn sign(args: &SignArgs) -> ExitCode {
    match Signer::new(args, None) {
        Ok(signer) => {
            for (name, value) in signer.headers() {
                println!("{name}: {value}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

pub(super) fn fail(message: &str) -> ExitCode {
    eprintln!("hookrunner: {message}");
    ExitCode::from(1)
}

/// Adds the provider's first header-borne id (delivery or event) unless the signature already set it.
fn add_header(headers: &mut Vec<(String, String)>, sources: &[IdSource], value: &str) {
    let header = sources.iter().find_map(|source| match source {
        IdSource::Header(name) => Some(*name),
        IdSource::Payload(_) => None,
    });
    if let Some(name) = header {
        if !headers
            .iter()
            .any(|(existing, _)| existing.eq_ignore_ascii_case(name))
        {
            headers.push((name.to_string(), value.to_string()));
        }
    }
}

fn read_data(data: Option<&str>) -> Result<Vec<u8>, String> {
    match data {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(body)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}")),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}
