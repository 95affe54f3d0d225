//! A fake service platform for SF1601 PostForespoerg on the shared TLS server (`broker::tls`),
//! mutual TLS with the test CA: the token exchange (`POST /service/AccessTokenService_1/token`,
//! a form field `saml-token` holding a base64 SAML assertion) and the question
//! (`GET /service/PostForespoerg_1/{digitalpost|nemsms}?cprNumber=|cvrNumber=`). It checks the
//! headers (`Authorization: Holder-of-key TOKEN` with a token it issued and has not revoked,
//! `X-TransaktionsId` a UUID, `X-TransaktionsTid` a UTC time) and the parameter, and records
//! every violation; it answers as told per party and channel: true, false, an HTTP status, late,
//! or a `result` that is not a boolean.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncWriteExt;

use crate::broker::tls::{self, ClientCertificates, Stream, TlsServer};

/// How to answer a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Registered(bool),
    Status(u16),
    /// Answer `registered` after this long.
    Late(Duration, bool),
    /// `{"result": "yes"}`.
    NotBoolean,
}

/// What the fake does and has seen.
#[derive(Default)]
pub struct State {
    /// Per (party, channel); else `default`.
    pub replies: HashMap<(String, String), Reply>,
    pub default: Option<Reply>,
    /// When set, the token exchange answers this status.
    pub token_status: Option<u16>,
    /// Access tokens issued and still good.
    pub tokens: Vec<String>,
    /// Revoke every token once this many questions were answered.
    pub revoke_after: Option<usize>,
    pub exchanges: u32,
    /// Every question: (party, channel).
    pub questions: Vec<(String, String)>,
    /// Every request that broke the protocol, and how.
    pub violations: Vec<String>,
}

/// A running fake; stopped when dropped.
pub struct FakePostForespoerg {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _server: TlsServer,
}

impl FakePostForespoerg {
    pub fn start() -> FakePostForespoerg {
        let state = Arc::new(Mutex::new(State {
            default: Some(Reply::Registered(true)),
            ..State::default()
        }));
        let served = state.clone();
        let server = tls::serve(ClientCertificates::Required, move |stream| {
            let state = served.clone();
            async move {
                let _ = answer(stream, &state).await;
            }
        });
        FakePostForespoerg {
            port: server.port,
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Answer `reply` about `party` on `channel`.
    pub fn reply(&self, party: &str, channel: &str, reply: Reply) {
        self.state
            .lock()
            .expect("lock")
            .replies
            .insert((party.to_owned(), channel.to_owned()), reply);
    }

    /// Revokes every access token issued once `questions` questions were answered (the next
    /// question with one gets 401).
    pub fn revoke_tokens_after(&self, questions: usize) {
        self.state.lock().expect("lock").revoke_after = Some(questions);
    }

    pub fn questions(&self) -> Vec<(String, String)> {
        self.state.lock().expect("lock").questions.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().expect("lock").violations.clone()
    }

    pub fn exchanges(&self) -> u32 {
        self.state.lock().expect("lock").exchanges
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(str::trim)
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(at, c)| match at {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

async fn respond(stream: &mut Stream, status: u16, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn answer(mut stream: Stream, state: &Mutex<State>) -> std::io::Result<()> {
    let Some((head, body)) = tls::read_http_request(&mut stream).await? else {
        return Ok(());
    };
    let request_line = head.lines().next().unwrap_or("").to_owned();
    if request_line.starts_with("post /service/accesstokenservice_1/token ") {
        return exchange(&mut stream, state, &head, &body).await;
    }
    let Some(target) = request_line
        .strip_prefix("get /service/postforespoerg_1/")
        .and_then(|rest| rest.split(' ').next())
    else {
        state
            .lock()
            .expect("lock")
            .violations
            .push(format!("unknown request `{request_line}`"));
        return respond(&mut stream, 404, "{}").await;
    };
    let (channel, query) = target.split_once('?').unwrap_or((target, ""));
    let party = query
        .strip_prefix("cprnumber=")
        .filter(|n| n.len() == 10)
        .or_else(|| query.strip_prefix("cvrnumber=").filter(|n| n.len() == 8))
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()));
    let mut problems = Vec::new();
    if !matches!(channel, "digitalpost" | "nemsms") {
        problems.push(format!("channel `{channel}`"));
    }
    if party.is_none() {
        problems.push(format!("query `{query}`"));
    }
    if !header(&head, "x-transaktionsid").is_some_and(is_uuid) {
        problems.push("X-TransaktionsId is not a UUID".to_owned());
    }
    let time_ok = header(&head, "x-transaktionstid")
        .is_some_and(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dt%H:%M:%Sz").is_ok());
    if !time_ok {
        problems.push("X-TransaktionsTid is not YYYY-MM-DDTHH:MM:SSZ".to_owned());
    }
    let reply = {
        let mut state = state.lock().expect("lock");
        if state.revoke_after == Some(state.questions.len()) {
            state.revoke_after = None;
            state.tokens.clear();
        }
        let token = header(&head, "authorization").and_then(|v| v.strip_prefix("holder-of-key "));
        if !token.is_some_and(|token| state.tokens.iter().any(|t| t == token)) {
            None
        } else {
            let party = party.unwrap_or_default().to_owned();
            state.questions.push((party.clone(), channel.to_owned()));
            if !problems.is_empty() {
                state.violations.extend(problems.clone());
            }
            state
                .replies
                .get(&(party, channel.to_owned()))
                .cloned()
                .or(state.default.clone())
        }
    };
    match reply {
        None => respond(&mut stream, 401, "{}").await,
        Some(_) if !problems.is_empty() => respond(&mut stream, 400, "{}").await,
        Some(Reply::Registered(registered)) => {
            respond(&mut stream, 200, &format!("{{\"result\": {registered}}}")).await
        }
        Some(Reply::Late(delay, registered)) => {
            tokio::time::sleep(delay).await;
            respond(&mut stream, 200, &format!("{{\"result\": {registered}}}")).await
        }
        Some(Reply::Status(status)) => respond(&mut stream, status, "{\"error\": \"x\"}").await,
        Some(Reply::NotBoolean) => respond(&mut stream, 200, "{\"result\": \"yes\"}").await,
    }
}

/// The token exchange: a form with a base64 SAML assertion in, an access token out.
async fn exchange(
    stream: &mut Stream,
    state: &Mutex<State>,
    head: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let form = String::from_utf8_lossy(body).into_owned();
    let assertion = form
        .strip_prefix("saml-token=")
        .map(|value| {
            let mut decoded = Vec::new();
            let bytes = value.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                if bytes[at] == b'%' && at + 2 < bytes.len() + 1 {
                    decoded.push(u8::from_str_radix(&value[at + 1..at + 3], 16).unwrap_or(0));
                    at += 3;
                } else {
                    decoded.push(bytes[at]);
                    at += 1;
                }
            }
            decoded
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .map(|xml| String::from_utf8_lossy(&xml).contains("Assertion"))
        .unwrap_or(false);
    let (status, token) = {
        let mut state = state.lock().expect("lock");
        state.exchanges += 1;
        if !assertion {
            state
                .violations
                .push(format!("token exchange body `{form:.80}`"));
        }
        if header(head, "content-type") != Some("application/x-www-form-urlencoded") {
            state
                .violations
                .push("token exchange content type".to_owned());
        }
        match state.token_status {
            Some(status) => (status, String::new()),
            None => {
                let token = format!("tok-{}", state.exchanges);
                state.tokens.push(token.clone());
                (200, token)
            }
        }
    };
    respond(
        stream,
        status,
        &format!(
            "{{\"access_token\": \"{token}\", \"token_type\": \"Holder-of-key\", \"expires_in\": 300}}"
        ),
    )
    .await
}
