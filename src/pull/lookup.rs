//! Asking SF1601 PostForespoerg whether a party is registered for Digital Post or NemSMS: a
//! token from the STS (the one `sync` uses, for PostForespoerg's entity id), exchanged for an
//! access token at the service platform, then one GET per party and channel, all over mutual
//! TLS with the function certificate. The access token is kept until shortly before it expires
//! and renewed after a 401. A technical failure is never an answer: only a 200 whose JSON has a
//! boolean `result` is one.

use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::config::{LookupConfig, StsConfig};
use crate::pull::credentials::Credentials;
use crate::pull::sts::TokenClient;

/// The most of an answer read: `{"result": true}` is a few bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Renew the access token this long before it expires.
const RENEW_BEFORE: chrono::Duration = chrono::Duration::seconds(60);

/// A channel PostForespoerg answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    DigitalPost,
    NemSms,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::DigitalPost, Channel::NemSms];

    /// As the replica names it (`registration.channel`), and the service's path.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::DigitalPost => "digitalpost",
            Channel::NemSms => "nemsms",
        }
    }

    pub fn named(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// A party to ask about: 10 digits (CPR) or 8 digits (CVR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub number: String,
}

impl Party {
    /// Reads `0101701234`, `010170-1234` or `12345678`; anything else is refused, naming the
    /// line (masked).
    pub fn parse(text: &str) -> Result<Party, String> {
        let trimmed = text.trim();
        let digits: String = match trimmed.as_bytes() {
            [head @ .., b'-', a, b, c, d] if head.len() == 6 => {
                format!(
                    "{}{}",
                    &trimmed[..6],
                    String::from_utf8_lossy(&[*a, *b, *c, *d])
                )
            }
            _ => trimmed.to_owned(),
        };
        if (digits.len() == 10 || digits.len() == 8) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Party { number: digits })
        } else {
            Err(format!(
                "`{}` is not a CPR number (10 digits) or a CVR number (8 digits)",
                crate::mask::mask_cpr_among_letters(&crate::mask::cap(trimmed, 40))
            ))
        }
    }

    /// `cpr` or `cvr`.
    pub fn kind(&self) -> &'static str {
        if self.number.len() == 10 {
            "cpr"
        } else {
            "cvr"
        }
    }

    fn query(&self) -> String {
        match self.kind() {
            "cpr" => format!("cprNumber={}", self.number),
            _ => format!("cvrNumber={}", self.number),
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub registered: bool,
    pub asked_at: String,
    pub transaction_id: String,
}

/// Why there is no answer. None of these says anything about the party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 401 or 403 after a fresh token: the service agreement does not name the entity id. Every
    /// further question would fail the same way.
    NotAllowed(String),
    /// No access token: the STS or the access token service failed or refused. Every further
    /// question would fail the same way.
    NoToken(String),
    /// Anything else: a timeout, another status, a body that is not an answer, TLS.
    Failed(String),
}

impl Failure {
    /// Whether every further question would fail the same way, so the rest is not asked.
    pub fn stops(&self) -> bool {
        matches!(self, Failure::NotAllowed(_) | Failure::NoToken(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotAllowed(text) | Failure::NoToken(text) | Failure::Failed(text) => {
                f.write_str(text)
            }
        }
    }
}

struct AccessToken {
    value: String,
    renew_at: DateTime<Utc>,
}

/// Asks PostForespoerg; holds the HTTPS client, the STS client and the access token.
pub struct LookupClient {
    http: reqwest::Client,
    base: String,
    cvr: String,
    entity_id: String,
    retries: u32,
    tokens: TokenClient,
    access: tokio::sync::Mutex<Option<AccessToken>>,
}

impl LookupClient {
    /// A client for `lookup` with the certificate of `sts`.
    pub fn new(lookup: &LookupConfig, sts: &StsConfig) -> Result<LookupClient> {
        let credentials = Credentials::load(sts)?;
        let http = crate::pull::net::mutual_tls_client(
            &credentials,
            Duration::from_secs(lookup.timeout_seconds),
            lookup
                .ca_file
                .as_deref()
                .map(|path| (path, "lookup.ca_file")),
        )?;
        let mut for_lookup = sts.clone();
        for_lookup.entity_id = lookup.entity_id.clone();
        Ok(LookupClient {
            http,
            base: lookup.url.clone(),
            cvr: lookup.cvr.clone().unwrap_or_else(|| sts.cvr.clone()),
            entity_id: lookup.entity_id.clone(),
            retries: lookup.retries,
            tokens: TokenClient::new(&for_lookup, &credentials)?,
            access: tokio::sync::Mutex::new(None),
        })
    }

    /// Asks whether `party` is registered for `channel`: retried on failures on the way, and
    /// once with a fresh token after a 401.
    pub async fn ask(&self, party: &Party, channel: Channel) -> Result<Answer, Failure> {
        let mut refreshed = false;
        let mut tries = 0;
        loop {
            match self.ask_once(party, channel).await {
                Err(Asking::Unauthorized(status)) if !refreshed => {
                    refreshed = true;
                    *self.access.lock().await = None;
                    self.tokens.invalidate(&self.cvr).await;
                    tracing::info!(
                        "PostForespoerg answered {status}; trying again with a new token"
                    );
                }
                Err(Asking::Unauthorized(status)) => {
                    return Err(Failure::NotAllowed(format!(
                        "PostForespoerg refused the token (HTTP {status}): the service agreement of CVR {} must name the entity id {}",
                        self.cvr, self.entity_id
                    )));
                }
                Err(Asking::NoToken(reason, true)) if tries < self.retries => {
                    tries += 1;
                    tracing::debug!("{reason}; trying again ({tries} of {})", self.retries);
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
                }
                Err(Asking::NoToken(reason, _)) => return Err(Failure::NoToken(reason)),
                Err(Asking::Transient(reason)) if tries < self.retries => {
                    tries += 1;
                    tracing::debug!("{reason}; asking again ({tries} of {})", self.retries);
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
                }
                Err(Asking::Transient(reason) | Asking::Final(reason)) => {
                    return Err(Failure::Failed(reason));
                }
                Ok(answer) => return Ok(answer),
            }
        }
    }

    async fn ask_once(&self, party: &Party, channel: Channel) -> Result<Answer, Asking> {
        let token = self.access_token().await.map_err(|error| match error {
            Asking::Transient(reason) => Asking::NoToken(reason, true),
            Asking::Final(reason) => Asking::NoToken(reason, false),
            other => other,
        })?;
        let transaction_id = new_transaction_id();
        let url = format!(
            "{}/service/PostForespoerg_1/{}?{}",
            self.base,
            channel.as_str(),
            party.query()
        );
        let response = self
            .http
            .get(&url)
            .header("Authorization", format!("Holder-of-key {token}"))
            .header("X-TransaktionsId", &transaction_id)
            .header(
                "X-TransaktionsTid",
                Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
            .send()
            .await
            .map_err(|error| transport("PostForespoerg", &error))?;
        let status = response.status().as_u16();
        let body = read_bounded(response).await?;
        match status {
            200 => {}
            401 | 403 => return Err(Asking::Unauthorized(status)),
            500..=599 | 429 => {
                return Err(Asking::Transient(format!(
                    "PostForespoerg answered HTTP {status}"
                )));
            }
            _ => {
                return Err(Asking::Final(format!(
                    "PostForespoerg answered HTTP {status}"
                )));
            }
        }
        let registered = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| value.get("result").and_then(serde_json::Value::as_bool))
            .ok_or_else(|| {
                Asking::Final(format!(
                    "PostForespoerg's answer is not {{\"result\": true|false}}: `{}`",
                    shown(&body)
                ))
            })?;
        Ok(Answer {
            registered,
            asked_at: crate::time::now_utc(),
            transaction_id,
        })
    }

    /// The access token: kept, or exchanged anew for an STS token.
    async fn access_token(&self) -> Result<String, Asking> {
        let mut access = self.access.lock().await;
        if let Some(token) = access.as_ref()
            && token.renew_at > Utc::now()
        {
            return Ok(token.value.clone());
        }
        let assertion = self.tokens.token(&self.cvr).await.map_err(|error| {
            Asking::Final(format!("no token from the STS for PostForespoerg: {error}"))
        })?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(assertion.assertion());
        let url = format!("{}/service/AccessTokenService_1/token", self.base);
        let response = self
            .http
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("saml-token={}", form_encoded(&encoded)))
            .send()
            .await
            .map_err(|error| transport("the access token service", &error))?;
        let status = response.status().as_u16();
        let body = read_bounded(response).await?;
        match status {
            200 => {}
            401 | 403 => return Err(Asking::Unauthorized(status)),
            _ => {
                return Err(Asking::Transient(format!(
                    "the access token service answered HTTP {status}"
                )));
            }
        }
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let (Some(value), Some(expires_in)) = (
            answer["access_token"].as_str(),
            answer["expires_in"]
                .as_i64()
                .or_else(|| answer["expires_in"].as_str()?.parse().ok()),
        ) else {
            return Err(Asking::Final(
                "the access token service's answer has no access_token and expires_in".into(),
            ));
        };
        let lifetime = chrono::Duration::seconds(expires_in.max(0));
        let token = AccessToken {
            value: value.to_owned(),
            renew_at: Utc::now() + (lifetime - RENEW_BEFORE).max(lifetime / 2),
        };
        let value = token.value.clone();
        *access = Some(token);
        Ok(value)
    }
}

/// How one try ended, before retries.
enum Asking {
    Unauthorized(u16),
    /// No access token to ask with; whether trying again may help.
    NoToken(String, bool),
    Transient(String),
    Final(String),
}

fn transport(what: &str, error: &reqwest::Error) -> Asking {
    let problem = if error.is_timeout() {
        "it did not answer in time".to_owned()
    } else {
        crate::pull::sts::error_chain(error)
    };
    Asking::Transient(format!("cannot reach {what}: {problem}"))
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, Asking> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport("PostForespoerg", &error))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Asking::Final(format!(
                "the answer is larger than {} KiB; check `lookup.url`",
                MAX_ANSWER_BYTES / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most 100 characters of a body, masked and escaped, for an error.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    crate::mask::mask_cpr(&crate::mask::cap(&text, 100)).into_owned()
}

/// `text` as an `application/x-www-form-urlencoded` value.
fn form_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'*') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A new random UUID (version 4).
pub fn new_transaction_id() -> String {
    let hex = crate::files::random_hex(16).unwrap_or_else(|_| {
        format!(
            "{:032x}",
            Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128
        )
    });
    let mut bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_are_ten_or_eight_digits() {
        assert_eq!(Party::parse(" 0101701234 ").unwrap().number, "0101701234");
        assert_eq!(Party::parse("010170-1234").unwrap().number, "0101701234");
        assert_eq!(Party::parse("12345678").unwrap().kind(), "cvr");
        for bad in ["", "123", "01017012345", "1234567-8", "12 345 678"] {
            assert!(Party::parse(bad).is_err(), "{bad}");
        }
        // A CPR number among other characters is refused, and masked in the message.
        for bad in ["0101701234x", "urn:oio:cpr-nr:0101701234", "abc0101701234"] {
            let error = Party::parse(bad).unwrap_err();
            assert!(!error.contains("0101701234"), "{error}");
        }
    }

    #[test]
    fn transaction_ids_are_version_4_uuids() {
        let id = new_transaction_id();
        assert!(crate::decode::message::is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_transaction_id());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encoded("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
