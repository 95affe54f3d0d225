//! DigitalPostTilmelding and NemSMSTilmelding: a citizen (CPR) or company (CVR) registered to or
//! deregistered from Digital Post or NemSMS.
//!
//! The payload schemas are not public, so the state is derived from the envelope: the party is
//! the CPR/CVR URN of `ObjektRegistrering/ObjektId` or `RelateretObjekt/ObjektId`, the change is
//! `ObjektHandling` (mapped by configuration), the time is `Registreringstidspunkt`. A payload
//! element `Tilmeldt` holding `true`/`false` (any namespace) wins over `ObjektHandling`.

use crate::decode::envelope::Envelope;
use crate::decode::xml::Tree;

/// Which register a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    DigitalPost,
    NemSms,
}

impl Channel {
    /// The value stored in `registration.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::DigitalPost => "digitalpost",
            Channel::NemSms => "nemsms",
        }
    }

    /// The key of this channel's `[types.*]` section in the configuration.
    pub fn config_key(self) -> &'static str {
        match self {
            Channel::DigitalPost => "digitalpost_registration",
            Channel::NemSms => "nemsms_registration",
        }
    }
}

/// How one registration beskedtype is read, from `[types.*]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationType {
    pub channel: Channel,
    pub beskedtype: String,
    /// `ObjektHandling` identifiers meaning "registered".
    pub registered: Vec<String>,
    /// `ObjektHandling` identifiers meaning "deregistered".
    pub deregistered: Vec<String>,
}

/// One change of one party's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The bare number: 10-digit CPR or 8-digit CVR.
    pub party: String,
    /// `cpr` or `cvr`.
    pub party_type: &'static str,
    pub channel: Channel,
    pub registered: bool,
    /// UTC text.
    pub changed_at: String,
    pub handling: Option<String>,
}

/// Derives the registration change, or says why it cannot.
pub fn parse_registration(
    envelope: &Envelope,
    kind: &RegistrationType,
) -> Result<Registration, String> {
    let candidates = envelope
        .registreringer
        .iter()
        .filter_map(|r| r.objekt_id.as_deref())
        .chain(
            envelope
                .relaterede_objekter
                .iter()
                .filter_map(|o| o.objekt_id.as_deref()),
        );
    let mut party = None;
    for urn in candidates {
        if let Some(found) = parse_party(urn)? {
            party = Some(found);
            break;
        }
    }
    let (party_type, party) = party.ok_or_else(|| {
        "no CPR or CVR number (urn:oio:cpr-nr:, urn:oio:cvr-nr: or urn:oio:cvr:) in \
         ObjektRegistrering/ObjektId or RelateretObjekt/ObjektId"
            .to_string()
    })?;

    let registrering = envelope.registreringer.first();
    let changed_at = registrering
        .and_then(|r| r.tidspunkt.clone())
        .or_else(|| envelope.dannelsestidspunkt.clone())
        .ok_or("no Registreringstidspunkt (nor Dannelsestidspunkt) to date the change")?;
    let handling = registrering.and_then(|r| r.handling.clone());

    let explicit = envelope
        .payload()
        .and_then(|(tree, root)| explicit_state(tree, root));
    let registered = match explicit {
        Some(state) => state,
        None => {
            let handling_id = handling.as_deref().unwrap_or("");
            let is_in =
                |list: &[String]| list.iter().any(|id| id.eq_ignore_ascii_case(handling_id));
            if is_in(&kind.registered) {
                true
            } else if is_in(&kind.deregistered) {
                false
            } else {
                return Err(format!(
                    "ObjektHandling `{handling_id}` is in neither types.{key}.registered nor \
                     types.{key}.deregistered in the configuration, and the payload has no \
                     Tilmeldt element; add the identifier to the configuration and run \
                     `beskedhent reprocess`",
                    key = kind.channel.config_key()
                ));
            }
        }
    };
    Ok(Registration {
        party,
        party_type,
        channel: kind.channel,
        registered,
        changed_at,
        handling,
    })
}

/// Reads a party URN. `Ok(None)` means "not a CPR/CVR URN"; an error means "one, but broken".
fn parse_party(urn: &str) -> Result<Option<(&'static str, String)>, String> {
    let lower = urn.to_ascii_lowercase();
    let (party_type, digits, number) = if let Some(number) = lower.strip_prefix("urn:oio:cpr-nr:") {
        ("cpr", 10, number)
    } else if let Some(number) = lower
        .strip_prefix("urn:oio:cvr-nr:")
        .or_else(|| lower.strip_prefix("urn:oio:cvr:"))
    {
        ("cvr", 8, number)
    } else {
        return Ok(None);
    };
    let number = number.trim().replace('-', "");
    if number.len() != digits || !number.bytes().all(|b| b.is_ascii_digit()) {
        // The broken number itself is not repeated: it may be a CPR number with a typo, which
        // the masking of logs would not recognise.
        let prefix = urn.rfind(':').map_or("", |at| &urn[..=at]);
        return Err(format!(
            "party URN `{prefix}…` ends in {} characters, not a {digits}-digit {} number",
            number.chars().count(),
            party_type.to_uppercase()
        ));
    }
    Ok(Some((party_type, number)))
}

/// A payload's explicit state: the first element named `Tilmeldt` holding a boolean.
fn explicit_state(tree: &Tree, root: usize) -> Option<bool> {
    std::iter::once(root)
        .chain(tree.descendants(root))
        .filter(|&i| tree.node(i).name == "Tilmeldt")
        .find_map(|i| {
            let text = tree.text(i)?;
            if text.eq_ignore_ascii_case("true") || text == "1" {
                Some(true)
            } else if text.eq_ignore_ascii_case("false") || text == "0" {
                Some(false)
            } else {
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::envelope::parse_envelope;

    const REGISTERED: &str = "0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d";
    const DEREGISTERED: &str = "0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d";

    fn kind() -> RegistrationType {
        RegistrationType {
            channel: Channel::DigitalPost,
            beskedtype: "t".into(),
            registered: vec![REGISTERED.into()],
            deregistered: vec![DEREGISTERED.into()],
        }
    }

    fn envelope(party: &str, handling: &str, time: &str, payload: &str) -> Vec<u8> {
        format!(
            r#"<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:o="urn:oio:sagdok:3.0.0"><BeskedId><o:UUIDIdentifikator>b</o:UUIDIdentifikator></BeskedId><Beskedkuvert><Filtreringsdata><RelateretObjekt><ObjektId><o:URNIdentifikator>{party}</o:URNIdentifikator></ObjektId></RelateretObjekt><ObjektRegistrering>{time}<ObjektHandling><o:UUIDIdentifikator>{handling}</o:UUIDIdentifikator></ObjektHandling></ObjektRegistrering></Filtreringsdata></Beskedkuvert><Beskeddata>{payload}</Beskeddata></Haendelsesbesked>"#
        )
        .into_bytes()
    }

    fn check(party: &str, handling: &str, payload: &str) -> Result<Registration, String> {
        let time = "<Registreringstidspunkt><o:TidsstempelDatoTid>2026-03-01T12:00:00</o:TidsstempelDatoTid></Registreringstidspunkt>";
        let bytes = envelope(party, handling, time, payload);
        parse_registration(&parse_envelope(&bytes).expect("envelope"), &kind())
    }

    #[test]
    fn derives_party_state_and_time() {
        let cases = [
            (
                "urn:oio:cpr-nr:0101701234",
                REGISTERED,
                "",
                ("cpr", "0101701234", true),
            ),
            (
                "urn:oio:cvr-nr:12345678",
                DEREGISTERED,
                "",
                ("cvr", "12345678", false),
            ),
            (
                "urn:oio:cvr:55133018",
                REGISTERED,
                "",
                ("cvr", "55133018", true),
            ),
            (
                "URN:OIO:CPR-NR:0101701234",
                REGISTERED,
                r#"<t:X xmlns:t="urn:t"><t:Tilmeldt>false</t:Tilmeldt></t:X>"#,
                ("cpr", "0101701234", false),
            ),
            (
                "urn:oio:cpr-nr:0101701234",
                "unknown",
                r#"<t:X xmlns:t="urn:t"><t:Tilmeldt>true</t:Tilmeldt></t:X>"#,
                ("cpr", "0101701234", true),
            ),
        ];
        for (party, handling, payload, (party_type, number, registered)) in cases {
            let got = check(party, handling, payload).expect(party);
            assert_eq!(
                (got.party_type, got.party.as_str(), got.registered),
                (party_type, number, registered),
                "{party} {handling}"
            );
            assert_eq!(got.changed_at, "2026-03-01T11:00:00.000Z");
        }
    }

    #[test]
    fn says_why_it_cannot() {
        let cases = [
            (
                "urn:oio:cpr-nr:12345",
                REGISTERED,
                "not a 10-digit CPR number",
            ),
            ("urn:uuid:x", REGISTERED, "no CPR or CVR number"),
            (
                "urn:oio:cvr:12345678",
                "nope",
                "ObjektHandling `nope` is in neither types.digitalpost_registration.registered",
            ),
        ];
        for (party, handling, expected) in cases {
            let error = check(party, handling, "").expect_err(party);
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn broken_cpr_is_masked_in_the_reason() {
        let error = check("urn:oio:cpr-nr:01017012345", REGISTERED, "").expect_err("11 digits");
        assert!(!error.contains("01017012345"), "{error}");
    }

    #[test]
    fn missing_time_is_refused() {
        let bytes = envelope("urn:oio:cvr:12345678", REGISTERED, "", "");
        let error = parse_registration(&parse_envelope(&bytes).expect("envelope"), &kind())
            .expect_err("no time");
        assert!(error.contains("no Registreringstidspunkt"), "{error}");
    }
}
