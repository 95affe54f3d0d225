//! A fake KOMBIT STS on the shared TLS server (`broker::tls`) with mutual TLS (client
//! certificates from the test CA only): it answers token requests with a base64 SAML assertion
//! carrying a `NotOnOrAfter`, or, when told to, refuses them with `{"code", "message"}`, answers
//! late, or answers with any bytes at all; it records every request and assertion.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncWriteExt;

use crate::broker::tls::{self, ClientCertificates, Stream, TlsServer};

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

/// A running fake STS; stopped when dropped.
pub struct FakeSts {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _server: TlsServer,
}

impl FakeSts {
    pub fn start(lifetime: Duration) -> FakeSts {
        let state = Arc::new(Mutex::new(State {
            lifetime,
            ..State::default()
        }));
        let served = state.clone();
        let server = tls::serve(ClientCertificates::Required, move |stream| {
            let state = served.clone();
            async move {
                let _ = answer(stream, &state).await;
            }
        });
        FakeSts {
            port: server.port,
            state,
            _server: server,
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

/// The assertion the fake STS issues (small enough for RabbitMQ's pre-login frame limit).
pub fn assertion(cvr: &str, not_on_or_after: &str) -> String {
    format!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_fake" Version="2.0"><saml:Issuer>fake-sts</saml:Issuer><saml:Subject><saml:NameID>CVR:{cvr}</saml:NameID></saml:Subject><saml:Conditions NotBefore="2020-01-01T00:00:00Z" NotOnOrAfter="{not_on_or_after}"/></saml:Assertion>"#
    )
}

/// Answers one token request as `state` says, and records it.
async fn answer(mut stream: Stream, state: &Mutex<State>) -> std::io::Result<()> {
    let Some((_, body)) = tls::read_http_request(&mut stream).await? else {
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
