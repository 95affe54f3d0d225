//! The connection to the Beskedfordeler's broker: AMQP 0-9-1 over TLS (verification always on),
//! logged in with SASL `EXTERNAL` whose response is the STS token, and the queue operations a
//! run needs. The queue is never declared.

use std::time::Duration;

use lapin::auth::AuthProvider;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use thiserror::Error;

use crate::config::AmqpConfig;
use crate::pull::credentials::Credentials;
use crate::pull::net::Problem;
use crate::pull::sts::{Token, error_chain};

/// SASL `EXTERNAL` whose response is the decoded SAML assertion (UTF-8 XML), as the
/// Beskedfordeler expects. lapin's built-in `EXTERNAL` sends an empty response.
pub struct AssertionAuth {
    response: Vec<u8>,
}

impl AssertionAuth {
    pub fn new(token: &Token) -> AssertionAuth {
        AssertionAuth {
            response: token.assertion().to_vec(),
        }
    }
}

impl AuthProvider for AssertionAuth {
    fn mechanism(&self) -> ShortString {
        "EXTERNAL".into()
    }

    fn auth_starter(&self) -> Result<LongString, String> {
        Ok(LongString::from(self.response.clone()))
    }

    fn continue_auth(&self, _challenge: LongString) -> Result<LongString, String> {
        Err("the broker sent a SASL challenge; EXTERNAL has none".into())
    }
}

/// Why talking to the broker failed. Told apart by the broker's reply code and the error's
/// type, never by its text.
#[derive(Debug, Error)]
pub enum AmqpError {
    /// The broker refused the login: the token (or, for the test broker, the certificate).
    #[error("the broker at {endpoint} refused the login: {}", error_chain(.source))]
    LoginRefused {
        endpoint: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker says the queue does not exist.
    #[error("the broker says queue `{queue}` does not exist: {}", error_chain(.source))]
    QueueMissing {
        queue: String,
        #[source]
        source: lapin::Error,
    },
    /// The queue may not be read with this login.
    #[error("the broker refused access to queue `{queue}`: {}", error_chain(.source))]
    QueueRefused {
        queue: String,
        #[source]
        source: lapin::Error,
    },
    /// Connecting failed, or the broker went away: worth a reconnect, unless `problem` says
    /// otherwise. `what` says which (`cannot connect to the broker`, `lost the broker`).
    #[error("{what} at {endpoint}: {}", error_chain(.source))]
    Broker {
        what: &'static str,
        endpoint: String,
        problem: Problem,
        #[source]
        source: lapin::Error,
    },
    /// The broker ended the consumer: worth a reconnect.
    #[error("the broker at {endpoint} ended the consumer")]
    ConsumerEnded { endpoint: String },
    /// No answer in time, a host that does not resolve, a setting that cannot be used: no
    /// library error underneath.
    #[error("{detail}")]
    Transport {
        endpoint: String,
        problem: Problem,
        detail: String,
    },
}

impl AmqpError {
    fn reply_code(error: &lapin::Error) -> Option<u16> {
        match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
            _ => None,
        }
    }

    fn connecting(error: lapin::Error, endpoint: &str) -> AmqpError {
        match Self::reply_code(&error) {
            Some(403) => AmqpError::LoginRefused {
                endpoint: endpoint.to_owned(),
                source: error,
            },
            _ => AmqpError::Broker {
                what: "cannot connect to the broker",
                endpoint: endpoint.to_owned(),
                problem: crate::pull::net::classify(&error),
                source: error,
            },
        }
    }

    /// The broker went away (or failed) in the middle of a session.
    pub fn lost(error: lapin::Error, endpoint: &str) -> AmqpError {
        AmqpError::Broker {
            what: "lost the broker",
            endpoint: endpoint.to_owned(),
            problem: crate::pull::net::classify(&error),
            source: error,
        }
    }

    fn for_queue(error: lapin::Error, queue: &str, endpoint: &str) -> AmqpError {
        match Self::reply_code(&error) {
            Some(404) => AmqpError::QueueMissing {
                queue: queue.to_owned(),
                source: error,
            },
            Some(403) => AmqpError::QueueRefused {
                queue: queue.to_owned(),
                source: error,
            },
            _ => Self::lost(error, endpoint),
        }
    }

    /// What kind of transport failure it is, if it is one.
    fn problem(&self) -> Option<Problem> {
        match self {
            AmqpError::Broker { problem, .. } | AmqpError::Transport { problem, .. } => {
                Some(*problem)
            }
            AmqpError::ConsumerEnded { .. } => Some(Problem::Other),
            _ => None,
        }
    }

    /// What to do about it, for the operator.
    pub fn hint(&self) -> &'static str {
        match self {
            AmqpError::LoginRefused { .. } => {
                "check that the certificate's organisation has a service agreement for this dueslag"
            }
            AmqpError::QueueMissing { .. } | AmqpError::QueueRefused { .. } => {
                "check `dueslag` of the feed"
            }
            AmqpError::Broker { .. }
            | AmqpError::ConsumerEnded { .. }
            | AmqpError::Transport { .. } => match self.problem().unwrap_or(Problem::Other) {
                Problem::Dns => {
                    "the host name does not resolve: check the host in `amqp.url` and this machine's DNS"
                }
                Problem::Refused => {
                    "nothing accepts connections there: check the host and port in `amqp.url` and the firewall"
                }
                Problem::Timeout => {
                    "no answer in time: check `amqp.url`, the firewall, or raise `amqp.connect_timeout_seconds`"
                }
                Problem::Certificate => {
                    "the broker's certificate is not trusted: add its issuer with `amqp.ca_file`, and check the host in `amqp.url`"
                }
                Problem::HandshakeRefused => {
                    "the broker refused the TLS handshake: check `amqp.client_certificate` and that `[sts]` names the registered certificate"
                }
                Problem::Other => "check the network; a run retries `sync.retries` times",
                Problem::Setting => {
                    "fix the file the message names; nothing was sent to the broker"
                }
            },
        }
    }

    /// True when trying again cannot help within this run.
    pub fn is_permanent(&self) -> bool {
        match self {
            AmqpError::QueueMissing { .. } | AmqpError::QueueRefused { .. } => true,
            AmqpError::Broker { .. }
            | AmqpError::ConsumerEnded { .. }
            | AmqpError::Transport { .. } => {
                matches!(
                    self.problem().unwrap_or(Problem::Other),
                    Problem::Dns
                        | Problem::Certificate
                        | Problem::HandshakeRefused
                        | Problem::Setting
                )
            }
            AmqpError::LoginRefused { .. } => false,
        }
    }
}

/// An open connection and channel.
pub struct Session {
    connection: Connection,
    pub channel: Channel,
    /// `host:port`, for messages.
    pub endpoint: String,
}

/// Connects and logs in with `token`.
pub async fn connect(
    config: &AmqpConfig,
    credentials: &Credentials,
    token: &Token,
    name: &str,
) -> Result<Session, AmqpError> {
    let transport = |endpoint: &str, problem, detail: String| AmqpError::Transport {
        endpoint: endpoint.to_owned(),
        problem,
        detail,
    };
    let mut uri: AMQPUri = config
        .url
        .parse()
        .map_err(|error: String| transport("-", Problem::Other, format!("`amqp.url`: {error}")))?;
    let endpoint = format!("{}:{}", uri.authority.host, uri.authority.port);
    uri.query.heartbeat = Some(config.heartbeat_seconds);
    let tls = OwnedTLSConfig {
        identity: config.client_certificate.then(|| OwnedIdentity::PKCS8 {
            pem: credentials.chain_pem().into_bytes(),
            key: credentials.key_pem().into_bytes(),
        }),
        cert_chain: match &config.ca_file {
            Some(path) => {
                let pem = crate::files::read_small_text(path).map_err(|error| {
                    transport(
                        &endpoint,
                        Problem::Setting,
                        format!("cannot read `amqp.ca_file` `{}`: {error}", path.display()),
                    )
                })?;
                // Checked here, so that a file that is not a CA certificate is said as such,
                // not as a broker that cannot be trusted.
                crate::pull::net::parse_trust_roots(pem.as_bytes(), path, "amqp.ca_file").map_err(
                    |error| transport(&endpoint, Problem::Setting, format!("{error:#}")),
                )?;
                Some(pem)
            }
            None => None,
        },
    };
    if !crate::pull::net::resolves(&uri.authority.host, uri.authority.port).await {
        return Err(transport(
            &endpoint,
            Problem::Dns,
            format!("cannot resolve the broker's host `{}`", uri.authority.host),
        ));
    }
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("beskedhent {name}").into())
        .with_auth_provider(AssertionAuth::new(token));
    let runtime = lapin::runtime::default_runtime()
        .map_err(|error| AmqpError::connecting(error, &endpoint))?;
    let connecting = Connection::connect_uri_with_config(uri, properties, tls, runtime);
    let connection = tokio::time::timeout(
        Duration::from_secs(config.connect_timeout_seconds),
        connecting,
    )
    .await
    .map_err(|_| {
        transport(
            &endpoint,
            Problem::Timeout,
            format!(
                "no answer from the broker at {endpoint} within {} s",
                config.connect_timeout_seconds
            ),
        )
    })?
    .map_err(|error| AmqpError::connecting(error, &endpoint))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|error| AmqpError::connecting(error, &endpoint))?;
    Ok(Session {
        connection,
        channel,
        endpoint,
    })
}

impl Session {
    /// Starts consuming `queue` with manual acknowledgement and the given prefetch.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, AmqpError> {
        self.channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|error| AmqpError::lost(error, &self.endpoint))?;
        self.channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| AmqpError::for_queue(error, queue, &self.endpoint))
    }

    /// One `basic.get`: `None` means the queue is empty.
    pub async fn get(&self, queue: &str) -> Result<Option<lapin::message::Delivery>, AmqpError> {
        self.channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .map(|message| message.map(|m| m.delivery))
            .map_err(|error| AmqpError::for_queue(error, queue, &self.endpoint))
    }

    /// Checks that `queue` exists without declaring or consuming it (a passive declare);
    /// returns how many messages wait in it.
    pub async fn queue_exists(&self, queue: &str) -> Result<u32, AmqpError> {
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        self.channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map(|declared| declared.message_count())
            .map_err(|error| AmqpError::for_queue(error, queue, &self.endpoint))
    }

    /// Acknowledges every delivery up to and including `delivery_tag`.
    pub async fn ack_through(&self, delivery_tag: u64) -> Result<(), AmqpError> {
        self.channel
            .basic_ack(delivery_tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|error| AmqpError::lost(error, &self.endpoint))
    }

    /// Closes politely; deliveries not acknowledged go back to the queue.
    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The URL without any user info, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_response_is_the_assertion_bytes() {
        let token = crate::pull::sts::parse_response(
            serde_json::json!({"RequestedSecurityToken": {"Assertion": "PHNhbWw6QXNzZXJ0aW9uIHhtbG5zOnNhbWw9InVybjpvYXNpczpuYW1lczp0YzpTQU1MOjIuMDphc3NlcnRpb24iPjxzYW1sOkNvbmRpdGlvbnMgTm90T25PckFmdGVyPSIyMDMwLTAxLTAxVDAwOjAwOjAwWiIvPjwvc2FtbDpBc3NlcnRpb24+"}})
                .to_string()
                .as_bytes(),
        )
        .expect("token");
        let auth = AssertionAuth::new(&token);
        assert_eq!(auth.mechanism().as_str(), "EXTERNAL");
        let response = auth.auth_starter().expect("response");
        assert_eq!(response.as_bytes(), token.assertion());
        assert!(response.as_bytes().starts_with(b"<saml:Assertion"));
    }

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("amqps://u:p@host:5671/BF"),
            "amqps://host:5671/BF"
        );
        assert_eq!(redact_url("amqps://host:5671/BF"), "amqps://host:5671/BF");
    }
}
