//! One received message, decoded: bytes in, a [`Message`] ready for the store or a
//! [`Rejection`] saying why not. No I/O.

use crate::decode::envelope;
use crate::decode::payload::post_status::{self, PostStatus};
use crate::decode::payload::registration::{self, Channel, Registration, RegistrationType};

/// What kind of message a beskedtype is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PostStatus,
    Registration(Channel),
    /// A beskedtype nobody configured: kept as a message, nothing derived.
    Other,
}

impl Kind {
    /// The value stored in `message.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PostStatus => "post_status",
            Kind::Registration(Channel::DigitalPost) => "digitalpost_registration",
            Kind::Registration(Channel::NemSms) => "nemsms_registration",
            Kind::Other => "other",
        }
    }
}

/// What is derived from a message, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    None,
    PostStatus(Box<PostStatus>),
    Registration(Registration),
}

/// A decoded message: the envelope fields the `message` table keeps, and its derived detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub besked_id: String,
    pub beskedtype: Option<String>,
    pub kind: Kind,
    pub created_at: Option<String>,
    pub transaktions_id: Option<String>,
    pub producer_uuid: Option<String>,
    pub detail: Detail,
}

/// Why something received was refused: a reason for a person (CPR numbers masked, control
/// characters escaped, at most about 1 KiB) and the besked id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: String,
    pub besked_id: Option<String>,
}

impl Rejection {
    /// A refusal; `reason` is cleaned for the `rejected` table and logs.
    pub fn new(reason: &str, besked_id: Option<String>) -> Rejection {
        Rejection {
            reason: crate::mask::clean_reason(reason),
            // An id that holds a CPR number is not kept beside the bytes (see `decode`); a
            // UUID is kept in lower case, as `message` keeps it.
            besked_id: besked_id
                .filter(|id| !holds_cpr(id))
                .map(canonical_besked_id),
        }
    }

    /// The cleaned reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// True when `text` holds a CPR number. A UUID is judged as logs are masked (its hex letters keep a run of digits in it from being
/// a number, or one random UUID in a thousand would be refused); any other id as `forget`
/// judges a number, so that an id refused here is never one it would mask later (after which
/// a copy received again would no longer be found a duplicate).
fn holds_cpr(text: &str) -> bool {
    if is_uuid(text) {
        matches!(crate::mask::mask_cpr(text), std::borrow::Cow::Owned(_))
    } else {
        crate::mask::holds_cpr_number(text)
            || matches!(crate::mask::mask_cpr(text), std::borrow::Cow::Owned(_))
    }
}

/// The form a BeskedId is stored and compared in: a UUID in lower case (so an upper-case copy
/// is the same message), anything else as received.
pub fn canonical_besked_id(id: String) -> String {
    if is_uuid(&id) && id.bytes().any(|b| b.is_ascii_uppercase()) {
        id.to_ascii_lowercase()
    } else {
        id
    }
}

/// True for the 8-4-4-4-12 hexadecimal form.
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(at, &b)| match at {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// What decoding needs to know: the size limit and the configured registration types.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub max_message_bytes: usize,
    pub registrations: Vec<RegistrationType>,
}

impl Decoder {
    /// Decodes one message; a refusal carries a reason for a person and the besked id if it
    /// could be read.
    pub fn decode(&self, raw: &[u8]) -> Result<Message, Rejection> {
        if raw.len() > self.max_message_bytes {
            return Err(Rejection::new(
                &too_large(raw.len() as u64, self.max_message_bytes),
                envelope::sniff_besked_id(raw),
            ));
        }
        let envelope = envelope::parse_envelope(raw)
            .map_err(|error| Rejection::new(&error.to_string(), envelope::sniff_besked_id(raw)))?;
        // A BeskedId is a UUID. One that holds a CPR number would put it into the replica's
        // keys and cursor, where neither masking nor `forget` can take it out.
        if holds_cpr(&envelope.besked_id) {
            return Err(Rejection::new(
                "BeskedId holds what looks like a CPR number (a BeskedId is a UUID)",
                None,
            ));
        }
        // Other digits than ASCII ones (full-width, say) could hide a CPR number from masking.
        if envelope
            .besked_id
            .chars()
            .any(|c| c.is_numeric() && !c.is_ascii_digit())
        {
            return Err(Rejection::new(
                "BeskedId has digits other than 0-9 (a BeskedId is a UUID)",
                None,
            ));
        }
        let kind = self.kind_of(envelope.beskedtype.as_deref());
        let refuse = |reason: String| Rejection::new(&reason, Some(envelope.besked_id.clone()));
        let detail = match kind {
            Kind::PostStatus => Detail::PostStatus(Box::new(
                post_status::parse_post_status(&envelope).map_err(refuse)?,
            )),
            Kind::Registration(channel) => {
                let config = self
                    .registrations
                    .iter()
                    .find(|r| r.channel == channel)
                    .expect("kind_of only returns configured channels");
                Detail::Registration(
                    registration::parse_registration(&envelope, config).map_err(refuse)?,
                )
            }
            Kind::Other => Detail::None,
        };
        Ok(Message {
            besked_id: canonical_besked_id(envelope.besked_id),
            beskedtype: envelope.beskedtype,
            kind,
            created_at: envelope.dannelsestidspunkt,
            transaktions_id: envelope.transaktions_id,
            producer_uuid: envelope.ansvarlig_aktoer,
            detail,
        })
    }

    fn kind_of(&self, beskedtype: Option<&str>) -> Kind {
        let Some(beskedtype) = beskedtype else {
            return Kind::Other;
        };
        if beskedtype.eq_ignore_ascii_case(post_status::BESKEDTYPE) {
            return Kind::PostStatus;
        }
        self.registrations
            .iter()
            .find(|r| r.beskedtype.eq_ignore_ascii_case(beskedtype))
            .map_or(Kind::Other, |r| Kind::Registration(r.channel))
    }
}

/// The reason given for a message over the size limit.
pub fn too_large(len: u64, limit: usize) -> String {
    format!(
        "message of {len} bytes is larger than max_message_bytes ({limit}); raise max_message_bytes in the configuration and run `beskedhent reprocess` to take it in"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        Decoder {
            max_message_bytes: 4096,
            registrations: vec![RegistrationType {
                channel: Channel::NemSms,
                beskedtype: "6c2f5b43-8e1d-4b69-8c1f-2d3e4f5a6b7c".into(),
                registered: vec!["r".into()],
                deregistered: vec!["d".into()],
            }],
        }
    }

    fn envelope(beskedtype: &str, handling: &str, party: &str) -> Vec<u8> {
        format!(
            r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:o="urn:oio:sagdok:3.0.0"><BeskedId><o:UUIDIdentifikator>id-1</o:UUIDIdentifikator></BeskedId><Beskedkuvert><Filtreringsdata><Beskedtype><o:UUIDIdentifikator>{beskedtype}</o:UUIDIdentifikator></Beskedtype><ObjektRegistrering><Registreringstidspunkt><o:TidsstempelDatoTid>2026-03-01T10:00:00Z</o:TidsstempelDatoTid></Registreringstidspunkt><ObjektId><o:URNIdentifikator>{party}</o:URNIdentifikator></ObjektId><ObjektHandling><o:UUIDIdentifikator>{handling}</o:UUIDIdentifikator></ObjektHandling></ObjektRegistrering></Filtreringsdata></Beskedkuvert></Haendelsesbesked>"#
        )
        .into_bytes()
    }

    #[test]
    fn kinds_follow_the_beskedtype() {
        let cases = [
            (post_status::BESKEDTYPE, Kind::PostStatus),
            (
                "6C2F5B43-8E1D-4B69-8C1F-2D3E4F5A6B7C",
                Kind::Registration(Channel::NemSms),
            ),
            ("00000000-0000-0000-0000-000000000000", Kind::Other),
        ];
        for (beskedtype, kind) in cases {
            let message = decoder()
                .decode(&envelope(beskedtype, "r", "urn:oio:cvr:12345678"))
                .expect(beskedtype);
            assert_eq!(message.kind, kind);
            assert_eq!(message.besked_id, "id-1");
        }
    }

    #[test]
    fn refusals_keep_the_besked_id_when_known() {
        let rejection = decoder()
            .decode(&envelope(
                "6c2f5b43-8e1d-4b69-8c1f-2d3e4f5a6b7c",
                "?",
                "urn:oio:cvr:12345678",
            ))
            .expect_err("unknown handling");
        assert_eq!(rejection.besked_id.as_deref(), Some("id-1"));
        assert!(
            rejection.reason().contains("types.nemsms_registration"),
            "{}",
            rejection.reason()
        );
    }

    #[test]
    fn oversized_messages_are_refused_before_parsing() {
        let rejection = decoder().decode(&vec![b' '; 4097]).expect_err("too large");
        assert!(
            rejection
                .reason()
                .starts_with("message of 4097 bytes is larger than max_message_bytes (4096)")
        );
    }
}
