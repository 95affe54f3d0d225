//! A webhook receiver on the shared TLS server (`broker::tls`; no client certificate asked for):
//! it records every request and answers as told, then 204.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

use crate::broker::tls::{self, ClientCertificates, Stream, TlsServer};

/// One request received: its head (lower-cased) and its body.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: serde_json::Value,
}

/// A running webhook receiver; stopped when dropped.
pub struct FakeWebhook {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    _server: TlsServer,
}

impl FakeWebhook {
    /// Answers 503 to the first `fail_first` requests, then 204.
    pub fn start(fail_first: usize) -> FakeWebhook {
        FakeWebhook::answering(vec!["503 Service Unavailable".into(); fail_first])
    }

    /// Answers the requests in turn with these status lines (each maybe followed by header
    /// lines, `\r\n`-separated), then with 204.
    pub fn answering(answers: Vec<String>) -> FakeWebhook {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let answers = Arc::new(answers);
        let server = tls::serve(ClientCertificates::NotAsked, move |stream| {
            let (log, answers) = (log.clone(), answers.clone());
            async move { answer(stream, &log, &answers).await }
        });
        FakeWebhook {
            port: server.port,
            received,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// Records one request and answers it with the status line its turn gets.
async fn answer(mut stream: Stream, log: &Mutex<Vec<Received>>, answers: &[String]) {
    let Ok(Some((head, body))) = tls::read_http_request(&mut stream).await else {
        return;
    };
    let count = {
        let mut log = log.lock().expect("lock");
        log.push(Received {
            head,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        });
        log.len()
    };
    let status = answers
        .get(count - 1)
        .map_or("204 No Content", String::as_str);
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
