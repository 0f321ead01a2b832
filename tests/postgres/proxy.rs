//! A TCP proxy between a store and the test server that loses a connection at the worst moment:
//! right after a `COMMIT` went out, or in the middle of a transaction, as a partition would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a [`Proxy`] does when it sees what it waits for in what the client sends.
#[derive(Clone, Copy)]
pub enum Trap {
    /// Passes it on, then cuts the connection before the answer comes back.
    Cut,
    /// Passes nothing more either way, and keeps the connection open: a network partition.
    Freeze,
}

/// A TCP proxy to a PostgreSQL server that, once armed, springs its trap on the first client
/// message holding `pattern`.
pub struct Proxy {
    pub port: u16,
    armed: Arc<AtomicBool>,
    sprung: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(server_port: u16, pattern: &'static [u8], trap: Trap) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let sprung = Arc::new(AtomicBool::new(false));
        let (flag, told) = (Arc::clone(&armed), Arc::clone(&sprung));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (flag, told) = (Arc::clone(&flag), Arc::clone(&told));
                tokio::spawn(async move {
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", server_port))
                        .await
                        .unwrap();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let mut buffer = vec![0; 64 << 10];
                        loop {
                            let read = client_read.read(&mut buffer).await.unwrap_or(0);
                            let data = &buffer[..read];
                            let caught =
                                data.windows(pattern.len()).any(|window| window == pattern)
                                    && flag.swap(false, Ordering::SeqCst);
                            if caught && matches!(trap, Trap::Freeze) {
                                told.store(true, Ordering::SeqCst);
                                return true;
                            }
                            if read == 0 || server_write.write_all(data).await.is_err() {
                                return false;
                            }
                            if caught {
                                told.store(true, Ordering::SeqCst);
                                return false;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    let frozen = tokio::select! {
                        frozen = upstream => frozen,
                        _ = downstream => false,
                    };
                    if frozen {
                        // Both connections stay open, silent, until the test ends.
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        Proxy {
            port,
            armed,
            sprung,
        }
    }

    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn sprung(&self) -> bool {
        self.sprung.load(Ordering::SeqCst)
    }
}

/// The port of the test server `url` names.
pub fn port_of(url: &str) -> u16 {
    url.split_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(port, _)| port.parse().ok())
        .expect("the test server's port")
}

/// `url` with its port replaced by `port`.
pub fn with_port(url: &str, port: u16) -> String {
    let (head, rest) = url.split_once("127.0.0.1:").expect("a local server");
    let (_, tail) = rest.split_once('/').expect("a database");
    format!("{head}127.0.0.1:{port}/{tail}")
}
