//! Tokens from KOMBIT's STS (REST flavour) over mutual TLS.
//!
//! One token per (CVR, entity id), kept in memory only and renewed before it expires or after
//! the broker refused it. The token is the decoded SAML assertion; its expiry is the
//! assertion's `Conditions/@NotOnOrAfter`. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use thiserror::Error;

use crate::config::StsConfig;
use crate::decode::xml;
use crate::pull::credentials::Credentials;
use crate::time;

const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// A SAML assertion, when it stops being valid, and when to renew it.
pub struct Token {
    assertion: Vec<u8>,
    pub not_on_or_after: DateTime<Utc>,
    /// `refresh_before_seconds` ahead of expiry, but never before half the token's life has
    /// passed, so a short-lived token is not renewed in a loop.
    pub renew_at: DateTime<Utc>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field(
                "assertion",
                &format_args!("<{} bytes>", self.assertion.len()),
            )
            .field("not_on_or_after", &self.not_on_or_after)
            .finish()
    }
}

impl Token {
    /// The decoded assertion XML: the SASL EXTERNAL response.
    pub fn assertion(&self) -> &[u8] {
        &self.assertion
    }
}

/// Why no token could be had.
#[derive(Debug, Error)]
pub enum StsError {
    #[error("the STS refused the token request (HTTP {status}, code {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the STS at {url}: {detail}")]
    Transport {
        url: String,
        problem: crate::pull::net::Problem,
        detail: String,
    },
    #[error("the STS answered something unexpected: {0}")]
    BadResponse(String),
}

impl StsError {
    /// What to do about it, for the operator.
    pub fn hint(&self, sts: &crate::config::StsConfig) -> String {
        use crate::pull::net::Problem;
        match self {
            StsError::Refused { status, .. } if *status >= 500 => {
                "the STS has trouble of its own; a later run tries again".into()
            }
            StsError::Refused { .. } => {
                "check `sts.entity_id`, the CVR, and that the certificate is registered for this CVR in KOMBIT's administration".into()
            }
            StsError::BadResponse(_) => {
                "check that `sts.url` is the STS's REST issue endpoint".into()
            }
            StsError::Transport { problem, .. } => match problem {
                Problem::Dns => "the host name in `sts.url` does not resolve: check it and this machine's DNS".into(),
                Problem::Refused => "nothing accepts connections there: check the host and port in `sts.url` and the firewall".into(),
                Problem::Timeout => format!(
                    "no answer within {} s: check `sts.url` and the firewall, or raise `sts.timeout_seconds`",
                    sts.timeout_seconds
                ),
                Problem::Certificate => "the STS's server certificate is not trusted: add its issuer with `sts.ca_file`, and check that `sts.url` names the right host".into(),
                Problem::HandshakeRefused => "the STS refused the TLS handshake: check that `[sts]` names the function certificate registered with KOMBIT".into(),
                Problem::Other => "check `sts.url` and the network".into(),
                Problem::Setting => "fix the file the message names; nothing was sent to the STS".into(),
            },
        }
    }

    /// Worth retrying later (network trouble, server errors), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            StsError::Transport { problem, .. } => !matches!(
                problem,
                crate::pull::net::Problem::Dns
                    | crate::pull::net::Problem::Certificate
                    | crate::pull::net::Problem::HandshakeRefused
            ),
            StsError::Refused { status, .. } => *status >= 500,
            StsError::BadResponse(_) => false,
        }
    }
}

/// Requests and caches tokens.
pub struct TokenClient {
    http: reqwest::Client,
    url: String,
    entity_id: String,
    use_key: String,
    refresh_before: chrono::Duration,
    /// Held across a request, so concurrent feeds of one CVR share one token.
    cache: tokio::sync::Mutex<HashMap<String, Arc<Token>>>,
}

impl TokenClient {
    pub fn new(sts: &StsConfig, credentials: &Credentials) -> anyhow::Result<TokenClient> {
        let http = crate::pull::net::mutual_tls_client(
            credentials,
            Duration::from_secs(sts.timeout_seconds),
            sts.ca_file.as_deref().map(|path| (path, "sts.ca_file")),
        )?;
        Ok(TokenClient {
            http,
            url: sts.url.clone(),
            entity_id: sts.entity_id.clone(),
            use_key: credentials.leaf_base64(),
            refresh_before: chrono::Duration::seconds(sts.refresh_before_seconds as i64),
            cache: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A token for `cvr` valid for at least the refresh margin: cached, or freshly requested.
    pub async fn token(&self, cvr: &str) -> Result<Arc<Token>, StsError> {
        let mut cache = self.cache.lock().await;
        let now = Utc::now();
        if let Some(token) = cache.get(cvr)
            && token.renew_at > now
        {
            return Ok(token.clone());
        }
        let mut token = self.request(cvr).await?;
        let lifetime = token.not_on_or_after - now;
        if lifetime <= chrono::Duration::zero() {
            return Err(StsError::BadResponse(format!(
                "the token expired on issue (NotOnOrAfter {}); check this machine's clock",
                time::format_utc(token.not_on_or_after)
            )));
        }
        token.renew_at = token.not_on_or_after - self.refresh_before.min(lifetime / 2);
        let token = Arc::new(token);
        tracing::info!(
            cvr,
            expires = %time::format_utc(token.not_on_or_after),
            "got a token from the STS"
        );
        cache.insert(cvr.to_owned(), token.clone());
        Ok(token)
    }

    /// Forgets the token of `cvr`, after the broker refused it.
    pub async fn invalidate(&self, cvr: &str) {
        self.cache.lock().await.remove(cvr);
    }

    async fn request(&self, cvr: &str) -> Result<Token, StsError> {
        let body = request_body(cvr, &self.entity_id, &self.use_key);
        let transport = |error: reqwest::Error| StsError::Transport {
            url: self.url.clone(),
            problem: if error.is_timeout() {
                crate::pull::net::Problem::Timeout
            } else {
                crate::pull::net::classify(&error)
            },
            detail: error_chain(&error),
        };
        let response = match self.http.post(&self.url).json(&body).send().await {
            Ok(response) => response,
            Err(error) => {
                let mut error = transport(error);
                if let StsError::Transport { problem, .. } = &mut error
                    && *problem == crate::pull::net::Problem::Other
                    && let Some((host, port)) = crate::pull::net::host_port(&self.url)
                    && !crate::pull::net::resolves(&host, port).await
                {
                    *problem = crate::pull::net::Problem::Dns;
                }
                return Err(error);
            }
        };
        let status = response.status();
        let bytes = read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|error| match error {
                Bounded::Transport(error) => transport(error),
                Bounded::TooLarge => StsError::BadResponse(format!(
                    "the STS answered with more than {} KiB (a token is a few KiB); check `sts.url`",
                    MAX_ANSWER_BYTES / 1024
                )),
            })?;
        if status.is_redirection() {
            return Err(StsError::BadResponse(format!(
                "the STS answered {status}, a redirect, which is not followed; set `sts.url` to the address of the issue endpoint itself"
            )));
        }
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        parse_response(&bytes)
    }
}

/// The most of an STS answer read: a token is a few KiB; anything much larger is not one.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why an answer was not read whole.
enum Bounded {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads an answer's body, at most `limit` bytes: a server that sends more is cut off.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Bounded> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Bounded::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(Bounded::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The JSON body of a token request.
pub fn request_body(cvr: &str, entity_id: &str, use_key: &str) -> Value {
    json!({
        "TokenType": "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0",
        "RequestType": "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
        "KeyType": "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey",
        "Anvenderkontekst": { "Cvr": cvr },
        "UseKey": use_key,
        "AppliesTo": { "EndpointReference": { "Address": entity_id } },
    })
}

/// Reads `{"code": ..., "message": ...}` from an error answer.
fn refusal(status: u16, body: &[u8]) -> StsError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|value| get_ci(value, name))
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
    };
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(no message)".into()
        } else {
            text.chars().take(300).collect()
        }
    });
    StsError::Refused {
        status,
        code: field("code").unwrap_or_else(|| "-".into()),
        message,
    }
}

/// Reads the assertion and its expiry from a successful answer.
pub fn parse_response(body: &[u8]) -> Result<Token, StsError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| StsError::BadResponse(format!("not JSON ({error})")))?;
    let encoded = get_ci(&value, "RequestedSecurityToken")
        .and_then(|token| get_ci(token, "Assertion"))
        .and_then(Value::as_str)
        .ok_or_else(|| StsError::BadResponse("no RequestedSecurityToken.Assertion".into()))?;
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let assertion = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|error| StsError::BadResponse(format!("the assertion is not base64 ({error})")))?;
    let not_on_or_after = not_on_or_after(&assertion)?;
    Ok(Token {
        assertion,
        not_on_or_after,
        renew_at: not_on_or_after,
    })
}

/// `Assertion/Conditions/@NotOnOrAfter`.
fn not_on_or_after(assertion: &[u8]) -> Result<DateTime<Utc>, StsError> {
    let tree = xml::parse_with_attributes(assertion).map_err(|error| {
        StsError::BadResponse(format!("the assertion is not usable XML: {error}"))
    })?;
    if !tree.node(xml::Tree::ROOT).is(SAML_NS, "Assertion") {
        return Err(StsError::BadResponse(
            "the token is not a SAML 2.0 Assertion".into(),
        ));
    }
    let value = tree
        .child(xml::Tree::ROOT, SAML_NS, "Conditions")
        .and_then(|conditions| tree.attribute(conditions, "NotOnOrAfter"))
        .ok_or_else(|| {
            StsError::BadResponse("the assertion has no Conditions/@NotOnOrAfter".into())
        })?;
    time::parse_timestamp(value)
        .ok_or_else(|| StsError::BadResponse(format!("NotOnOrAfter `{value}` is not a timestamp")))
}

/// A JSON object member by name, ignoring case.
fn get_ci<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// An error with its causes, e.g. the TLS reason behind a connection failure.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(not_on_or_after: &str) -> String {
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1"><saml:Issuer>sts</saml:Issuer><saml:Conditions NotBefore="2026-01-01T00:00:00Z" NotOnOrAfter="{not_on_or_after}"/></saml:Assertion>"#
        )
    }

    fn response(assertion: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(assertion);
        json!({"RequestedSecurityToken": {"Assertion": encoded}, "Lifetime": "11/27/2026 12:00:00"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn reads_the_assertion_and_its_expiry() {
        let xml = assertion("2026-11-27T12:00:00.000Z");
        let token = parse_response(&response(&xml)).expect("valid");
        assert_eq!(token.assertion(), xml.as_bytes());
        assert_eq!(
            time::format_utc(token.not_on_or_after),
            "2026-11-27T12:00:00.000Z"
        );
        assert!(!format!("{token:?}").contains("Assertion"), "{token:?}");
    }

    #[test]
    fn bad_answers_say_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"<html/>".to_vec(), "not JSON"),
            (b"{}".to_vec(), "no RequestedSecurityToken.Assertion"),
            (
                json!({"RequestedSecurityToken": {"Assertion": "%%"}})
                    .to_string()
                    .into_bytes(),
                "not base64",
            ),
            (response("<x/>"), "not a SAML 2.0 Assertion"),
            (response("<!DOCTYPE x><x/>"), "DOCTYPE"),
            (
                response(r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>"#),
                "no Conditions/@NotOnOrAfter",
            ),
            (response(&assertion("soon")), "`soon` is not a timestamp"),
        ];
        for (body, expected) in cases {
            let error = parse_response(&body).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn refusals_carry_code_and_message() {
        let error = refusal(
            400,
            br#"{"code": 3017, "message": "Certifikatet er spaerret"}"#,
        );
        assert_eq!(
            error.to_string(),
            "the STS refused the token request (HTTP 400, code 3017): Certifikatet er spaerret"
        );
        assert!(!error.is_transient());
        let error = refusal(503, b"");
        assert_eq!(
            error.to_string(),
            "the STS refused the token request (HTTP 503, code -): (no message)"
        );
        assert!(error.is_transient());
    }

    #[test]
    fn request_body_has_the_documented_shape() {
        let body = request_body(
            "12345678",
            "http://entityid.kombit.dk/service/bfo_modtag/2",
            "QUJD",
        );
        assert_eq!(body["Anvenderkontekst"]["Cvr"], "12345678");
        assert_eq!(body["UseKey"], "QUJD");
        assert_eq!(
            body["AppliesTo"]["EndpointReference"]["Address"],
            "http://entityid.kombit.dk/service/bfo_modtag/2"
        );
        assert_eq!(
            body["TokenType"],
            "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
        );
    }
}
