//! A fake KOMBIT STS: an in-process HTTPS server with mutual TLS (client certificates from the
//! test CA only) that answers token requests with a base64 SAML assertion carrying a
//! `NotOnOrAfter`, or refuses them with `{"code", "message"}` when told to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::broker::certs;

/// What the fake STS does and has seen.
#[derive(Default)]
pub struct State {
    /// How long issued tokens live.
    pub lifetime: Duration,
    /// When set, answer every request with this HTTP status and message.
    pub refuse: Option<(u16, String)>,
    /// Every request body received, in order.
    pub requests: Vec<serde_json::Value>,
    /// Every assertion issued (decoded XML), in order.
    pub issued: Vec<String>,
    /// When set, wait this long before answering.
    pub delay: Option<Duration>,
    /// When set, answer every request with these bytes (status line, headers and body).
    pub raw_answer: Option<Vec<u8>>,
}

pub struct FakeSts {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSts {
    pub fn start(lifetime: Duration) -> FakeSts {
        let certs = certs();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(certs.path("server.pem"))
                .expect("server cert")
                .collect::<Result<_, _>>()
                .expect("server cert");
        let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).expect("server key");
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(certs.path("ca.pem")).expect("ca") {
            roots.add(ca.expect("ca")).expect("add ca");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            lifetime,
            ..State::default()
        }));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let (acceptor, state) = (acceptor.clone(), served.clone());
                            tokio::spawn(async move {
                                // A client without an acceptable certificate fails here.
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let _ = serve(stream, &state).await;
                                }
                            });
                        }
                    }
                }
            });
        });
        FakeSts {
            port,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!(
            "https://localhost:{}/runtime/api/rest/wstrust/v1/issue",
            self.port
        )
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.state.lock().expect("lock").requests.clone()
    }
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The assertion the fake STS issues (small enough for RabbitMQ's pre-login frame limit).
pub fn assertion(cvr: &str, not_on_or_after: &str) -> String {
    format!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_fake" Version="2.0"><saml:Issuer>fake-sts</saml:Issuer><saml:Subject><saml:NameID>CVR:{cvr}</saml:NameID></saml:Subject><saml:Conditions NotBefore="2020-01-01T00:00:00Z" NotOnOrAfter="{not_on_or_after}"/></saml:Assertion>"#
    )
}

async fn serve(
    mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let Some((_, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let delay = state.lock().expect("lock").delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let raw = {
        let mut state = state.lock().expect("lock");
        state.requests.push(body.clone());
        state.raw_answer.clone()
    };
    if let Some(raw) = raw {
        stream.write_all(&raw).await?;
        return stream.shutdown().await;
    }
    let (status, answer) = {
        let mut state = state.lock().expect("lock");
        match &state.refuse {
            Some((status, message)) => (
                *status,
                serde_json::json!({"code": 3017, "message": message}),
            ),
            None => {
                let expires = chrono::Utc::now()
                    + chrono::Duration::from_std(state.lifetime).expect("lifetime");
                let cvr = body["Anvenderkontekst"]["Cvr"].as_str().unwrap_or("");
                let xml = assertion(cvr, &expires.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
                state.issued.push(xml.clone());
                (
                    200,
                    serde_json::json!({
                        "RequestedSecurityToken": {
                            "Assertion": base64::engine::general_purpose::STANDARD.encode(xml)
                        },
                        "Lifetime": expires.format("%m/%d/%Y %H:%M:%S").to_string()
                    }),
                )
            }
        }
    };
    let payload = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads one HTTP/1.1 request: its head (lower-cased) and its body (by Content-Length). None if
/// the client closed the connection before a whole head arrived.
pub async fn read_request(
    stream: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        request.extend_from_slice(&buffer[..read]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < header_end + length {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    Ok(Some((head, request.split_off(header_end))))
}
