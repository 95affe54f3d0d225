//! The one TLS server of the fakes (the STS, the webhook, an AMQP server that only shakes
//! hands): on 127.0.0.1 at a free port, with the test CA's server certificate (for `localhost`
//! and 127.0.0.1), client certificates from the test CA either required or not asked for, and a
//! handler run for each connection, its handshake done, on the server's own thread and runtime.
//! Reading one HTTP/1.1 request off a connection is here too.
//!
//! A child of `broker.rs`, which makes the certificates, so that whatever includes the broker
//! (the benchmarks too) has it.

use std::future::Future;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;

/// A connection, its TLS handshake done.
pub type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Whether the server asks its clients for a certificate.
#[derive(Clone, Copy, Debug)]
pub enum ClientCertificates {
    /// Only a client with a certificate from the test CA gets through the handshake.
    Required,
    /// No client certificate is asked for.
    NotAsked,
}

/// A running server. Dropping it stops it (connections still being handled are cut off) and
/// waits for its thread.
pub struct TlsServer {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a server that runs `handler` on every connection whose handshake succeeds, each
/// connection in a task of its own; a failed handshake (a client without an acceptable
/// certificate) never reaches the handler.
pub fn serve<H, F>(clients: ClientCertificates, handler: H) -> TlsServer
where
    H: Fn(Stream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(clients)));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let handler = Arc::new(handler);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
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
                        let (acceptor, handler) = (acceptor.clone(), handler.clone());
                        tokio::spawn(async move {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                handler(stream).await;
                            }
                        });
                    }
                }
            }
        });
    });
    TlsServer {
        port,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's configuration: the test CA's server certificate and key, and a verifier of
/// client certificates against the test CA when they are required.
fn server_config(clients: ClientCertificates) -> rustls::ServerConfig {
    let certs = super::certs();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.path("server.pem"))
            .expect("server cert")
            .collect::<Result<_, _>>()
            .expect("server cert");
    let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).expect("server key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match clients {
        ClientCertificates::Required => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(certs.path("ca.pem")).expect("ca") {
                roots.add(ca.expect("ca")).expect("add ca");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        ClientCertificates::NotAsked => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).expect("server config")
}

/// Reads one HTTP/1.1 request: its head (lower-cased) and its body (by Content-Length). None if
/// the client closed the connection before a whole head arrived.
pub async fn read_http_request(stream: &mut Stream) -> std::io::Result<Option<(String, Vec<u8>)>> {
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
