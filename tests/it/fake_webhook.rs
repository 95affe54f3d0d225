//! A webhook receiver: an in-process HTTPS server (the test CA's server certificate, no client
//! certificate asked for) that records every request and answers as told, then 204.

use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;

use crate::broker::certs;

/// One request received: its head (lower-cased) and its body.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: serde_json::Value,
}

pub struct FakeWebhook {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeWebhook {
    /// Answers 503 to the first `fail_first` requests, then 204.
    pub fn start(fail_first: usize) -> FakeWebhook {
        FakeWebhook::answering(vec!["503 Service Unavailable".into(); fail_first])
    }

    /// Answers the requests in turn with these status lines (each maybe followed by header
    /// lines, `\r\n`-separated), then with 204.
    pub fn answering(answers: Vec<String>) -> FakeWebhook {
        let certs = certs();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(certs.path("server.pem"))
                .expect("server cert")
                .collect::<Result<_, _>>()
                .expect("server cert");
        let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        continue;
                    };
                    let Some(request) = read_request(&mut stream).await else {
                        continue;
                    };
                    let count = {
                        let mut log = log.lock().expect("lock");
                        log.push(request);
                        log.len()
                    };
                    let status = answers
                        .get(count - 1)
                        .map_or("204 No Content", String::as_str);
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
        });
        FakeWebhook {
            port,
            received,
            _thread: thread,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn read_request(
    stream: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<Received> {
    let (head, body) = crate::fake_sts::read_request(stream).await.ok()??;
    Some(Received {
        head,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    })
}
