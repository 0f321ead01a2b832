//! `hookrunner sign` and `hookrunner send`: sign a body the way a provider would, and POST it.

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
    /// The provider whose headers to make: github, gitlab, gitea, bitbucket, stripe, slack, standard, shopify, hmac, token.
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
    /// The Unix time to sign with (Stripe, Slack, Standard Webhooks); now when left out.
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

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Where to POST, such as http://127.0.0.1:9000/hooks/deploy-site
    pub url: String,
    #[command(flatten)]
    pub sign: SignArgs,
    /// An extra header, `Name: value`; repeat for several. A `Content-Type` here replaces the guessed one.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The event name, sent in the provider's event header (e.g. `push` as `X-GitHub-Event`).
    #[arg(long)]
    pub event: Option<String>,
}

/// A signed request, ready to print or send.
struct Signed {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

pub fn sign(args: &SignArgs) -> ExitCode {
    match make(args, None) {
        Ok(signed) => {
            for (name, value) in signed.headers {
                println!("{name}: {value}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

pub fn send(args: &SendArgs) -> ExitCode {
    let signed = match make(&args.sign, args.event.as_deref()) {
        Ok(signed) => signed,
        Err(message) => return fail(&message),
    };
    let mut headers = signed.headers;
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return fail(&format!("`--header {header}` is not `Name: value`"));
        };
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name.trim()));
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        headers.push((
            "Content-Type".into(),
            guess_content_type(&signed.body).into(),
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    let result = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client.post(&args.url).body(signed.body);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status();
        let version = format!("{:?}", response.version());
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((status, version, text))
    });
    match result {
        Ok((status, version, text)) => {
            println!("{version} {status}");
            println!("{text}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => fail(&format!("cannot send to `{}`: {error}", args.url)),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("hookrunner: {message}");
    ExitCode::from(1)
}

fn make(args: &SignArgs, event: Option<&str>) -> Result<Signed, String> {
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
    let timestamp = args.timestamp.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64)
    });
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("msg_{:024x}", rand::random::<u128>() >> 32));
    let mut headers = provider.sign(&body, &id, timestamp);
    if args.id.is_some() {
        add_header(&mut headers, provider.delivery_sources(), &id);
    }
    if let Some(event) = event {
        add_header(&mut headers, provider.event_sources(), event);
    }
    Ok(Signed { body, headers })
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

/// JSON when the body parses as JSON, form data when it looks like `a=b&c=d`, plain text otherwise.
fn guess_content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else if !body.is_empty() && body.contains(&b'=') && !body.iter().any(u8::is_ascii_whitespace)
    {
        "application/x-www-form-urlencoded"
    } else {
        "text/plain"
    }
}
