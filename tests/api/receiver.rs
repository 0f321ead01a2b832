//! A small HTTP receiver on loopback for tests of what hookrunner sends: it answers each request
//! from a script and records every request it gets, with the time it came. The API tests and the
//! PostgreSQL cluster tests (`tests/postgres/notify.rs`) share it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the receiver got it.
pub struct Seen {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
            .map_or("", |(_, value)| value)
    }

    /// Checks a Standard Webhooks signature the way a receiver does, independently of
    /// hookrunner: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under `secret` (a
    /// `whsec_` key), signed at this try.
    pub fn verify(&self, secret: &str) {
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(
            format!(
                "{}.{}.",
                self.header("webhook-id"),
                self.header("webhook-timestamp")
            )
            .as_bytes(),
        );
        mac.update(&self.body);
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(self.header("webhook-signature"), expected);
        let timestamp: i64 = self.header("webhook-timestamp").parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - timestamp).abs() < 60, "signed at this try");
    }
}

/// A receiver on `listener` that answers its `n`th request with `answers[n]` (the last one
/// again once they run out): a status line and extra header lines, such as
/// `("503 Service Unavailable", "Retry-After: 1\r\n")`.
pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    pub async fn start(answers: &[(&'static str, &'static str)]) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), answers)
    }

    pub fn on(listener: TcpListener, answers: &[(&'static str, &'static str)]) -> Receiver {
        let url = format!("http://{}/hooks/deploy", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = answers.to_vec();
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let request = read_request(stream).await;
                let Some((mut stream, request)) = request else {
                    continue;
                };
                let count = {
                    let mut seen = record.lock().unwrap();
                    seen.push(request);
                    seen.len()
                };
                let (status, headers) = answers[(count - 1).min(answers.len() - 1)];
                // A scripted `Content-Length` longer than the body makes an answer cut short.
                let length = if headers.contains("Content-Length") {
                    ""
                } else {
                    "Content-Length: 7\r\n"
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{headers}{length}Connection: close\r\n\r\nanswer{count}"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Receiver { url, seen }
    }

    pub fn tries(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The time between each request and the next.
    pub fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        seen.windows(2)
            .map(|pair| pair[1].at - pair[0].at)
            .collect()
    }
}

async fn read_request(stream: TcpStream) -> Option<(TcpStream, Seen)> {
    let at = Instant::now();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((reader.into_inner(), Seen { at, headers, body }))
}
