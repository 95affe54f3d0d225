//! PKO_PostStatus (`DigitalPost_StatusPrint`): receipts from Digital Post and remote-print
//! status events.
//!
//! Fields come from the decoded payload where present and fall back to the envelope
//! (`ObjektRegistrering`), so a status is useful even when the payload is missing.

use crate::decode::envelope::Envelope;
use crate::decode::field::child_text;
use crate::decode::xml::{NS_POST_STATUS, Tree};
use crate::time;

/// The PKO_PostStatus beskedtype UUID.
pub const BESKEDTYPE: &str = "d2bed63c-4853-4008-b6e0-a74c15b15fbf";

/// An `ObjektHandling` event: its name and how it ends a letter's story, if it does.
struct Event {
    uuid: &'static str,
    name: &'static str,
    outcome: Option<&'static str>,
}

const EVENTS: &[Event] = &[
    Event {
        uuid: "e225a75c-4b63-46c4-9423-77f5c8762445",
        name: "Fejlet",
        outcome: Some("failed"),
    },
    Event {
        uuid: "eb866ca2-b871-4387-b501-12cde577bd58",
        name: "Modtaget Digital Post",
        outcome: None,
    },
    Event {
        uuid: "f7161a89-5068-4023-bc80-d7f4daad2a2e",
        name: "Afleveret Digital Post",
        outcome: Some("delivered"),
    },
    Event {
        uuid: "db5a6025-caa3-45c3-8e02-4e6fa8142ade",
        name: "Afsendt",
        outcome: None,
    },
    Event {
        uuid: "dd98e71c-41ac-4305-a47b-8f86b00e639b",
        name: "Modtaget Fjernprint",
        outcome: None,
    },
    Event {
        uuid: "e2b30d57-504a-4e2e-ae2d-a1394a9cb0b8",
        name: "Klar",
        outcome: None,
    },
    Event {
        uuid: "e3c0a021-2070-40d4-b7b7-754aeba762e9",
        name: "Afleveret til print og kuvertering",
        outcome: None,
    },
    Event {
        uuid: "e94a0a8b-60a0-42ad-8b83-52c9e15d0fb3",
        name: "Modtaget Post Danmark",
        outcome: Some("delivered"),
    },
    Event {
        uuid: "f03904aa-df6e-417f-bd74-6a01a61adbcf",
        name: "Tilbagekaldt",
        outcome: Some("recalled"),
    },
    Event {
        uuid: "f4e6eb11-0261-4198-8b5d-be92a9b1a35d",
        name: "Opdatering fra Post Danmark",
        outcome: None,
    },
];

const PRODUCERS: &[(&str, &str)] = &[
    ("96514e13-afdd-44d6-95a8-adc2ca19b127", "Digital Post"),
    ("afd21f3d-11c7-4f51-b2a6-f31d6480a9fb", "Strålfors"),
    ("ae5b9a93-c923-40d7-a41a-1eec18374e27", "Edora"),
    ("6b12182a-4268-4130-bd3e-159f8862c0a1", "KMD Charlie Tango"),
];

/// The producer's name for a `BeskedAnsvarligAktoer` UUID.
pub fn producer_name(uuid: &str) -> Option<&'static str> {
    PRODUCERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(uuid))
        .map(|(_, name)| *name)
}

/// A postage or other postal event of a physical letter (`ForsendelseHaendelse`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostalEvent {
    pub type_kode: Option<String>,
    pub occurred_at: Option<String>,
    pub beloeb: Option<String>,
}

/// One status of one letter. Times are UTC text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostStatus {
    pub message_uuid: Option<String>,
    pub transmission_id: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub kanal: Option<String>,
    /// `TransaktionsStatusKode` as sent.
    pub status: Option<String>,
    /// The event's name, from `ObjektHandling` (or from `status` when the UUID is unknown).
    pub event: Option<String>,
    pub event_uuid: Option<String>,
    /// A final status ends the letter's story: failed, delivered or recalled.
    pub is_final: bool,
    /// `failed`, `delivered` or `recalled` for a final status.
    pub outcome: Option<&'static str>,
    pub occurred_at: Option<String>,
    pub fejl_kode: Option<String>,
    pub fejl_tekst: Option<String>,
    pub afsendelse_id: Option<String>,
    pub forsendelse_id: Option<String>,
    pub forsendelse_type_id: Option<String>,
    pub bruger_navn: Option<String>,
    pub enhed_tekst: Option<String>,
    pub afsender_system_id: Option<String>,
    pub producer: Option<&'static str>,
    pub producer_uuid: Option<String>,
    pub postal_events: Vec<PostalEvent>,
}

/// Derives the status from an envelope of beskedtype PKO_PostStatus.
pub fn parse_post_status(envelope: &Envelope) -> Result<PostStatus, String> {
    let registrering = envelope.registreringer.first();
    let from_envelope =
        |field: fn(&crate::decode::envelope::ObjectRegistration) -> &Option<String>| {
            registrering.and_then(|r| field(r).clone())
        };
    let mut status = PostStatus {
        message_uuid: from_envelope(|r| &r.objekt_id),
        transmission_id: from_envelope(|r| &r.registrering_id),
        occurred_at: from_envelope(|r| &r.tidspunkt),
        event_uuid: from_envelope(|r| &r.handling),
        producer_uuid: envelope.ansvarlig_aktoer.clone(),
        ..PostStatus::default()
    };
    status.producer = status.producer_uuid.as_deref().and_then(producer_name);

    if let Some((tree, root)) = envelope.payload()
        && tree.node(root).is(NS_POST_STATUS, "PKO_PostStatus")
    {
        read_payload(tree, root, &mut status)?;
    }

    let known = status
        .event_uuid
        .as_deref()
        .and_then(|uuid| EVENTS.iter().find(|e| e.uuid.eq_ignore_ascii_case(uuid)))
        .or_else(|| {
            let text = status.status.as_deref()?;
            EVENTS.iter().find(|e| e.name.eq_ignore_ascii_case(text))
        });
    if let Some(event) = known {
        status.event = Some(event.name.to_owned());
        status.outcome = event.outcome;
        status.is_final = event.outcome.is_some();
    }
    Ok(status)
}

fn read_payload(tree: &Tree, root: usize, status: &mut PostStatus) -> Result<(), String> {
    let text = |name: &str| child_text(tree, root, NS_POST_STATUS, name);
    let keep = |target: &mut Option<String>, value: Option<String>| {
        if value.is_some() {
            *target = value;
        }
    };
    keep(&mut status.transmission_id, text("TransmissionId"));
    keep(&mut status.message_uuid, text("MessageUUID"));
    status.message_id = text("MessageId");
    status.kanal = text("KanalKode");
    status.status = text("TransaktionsStatusKode");
    status.correlation_id = text("CorrelationId");
    status.afsendelse_id = text("AfsendelseIdentifikator");
    status.forsendelse_id = text("ForsendelseIdentifikator");
    status.forsendelse_type_id = text("ForsendelseTypeIdentifikator");
    status.bruger_navn = text("BrugerNavn");
    status.enhed_tekst = text("EnhedTekst");
    status.afsender_system_id = text("AfsenderSystemIdentifikator");
    if let Some(value) = text("TransaktionsDatoTid") {
        status.occurred_at = Some(timestamp("TransaktionsDatoTid", &value)?);
    }
    if let Some(fejl) = tree.child(root, NS_POST_STATUS, "FejlDetaljer") {
        status.fejl_kode = child_text(tree, fejl, NS_POST_STATUS, "FejlKode");
        status.fejl_tekst = child_text(tree, fejl, NS_POST_STATUS, "FejlTekst");
    }
    if let Some(samling) = tree.child(root, NS_POST_STATUS, "ForsendelseHaendelseSamling") {
        for event in tree.children_named(samling, NS_POST_STATUS, "ForsendelseHaendelse") {
            let field = |name: &str| child_text(tree, event, NS_POST_STATUS, name);
            let occurred_at = match field("ForsendelseHaendelseDatoTid") {
                Some(value) => Some(timestamp("ForsendelseHaendelseDatoTid", &value)?),
                None => None,
            };
            status.postal_events.push(PostalEvent {
                type_kode: field("ForsendelseHaendelseTypeKode"),
                occurred_at,
                beloeb: field("ForsendelseHaendelseBeloeb"),
            });
        }
    }
    Ok(())
}

fn timestamp(element: &str, value: &str) -> Result<String, String> {
    time::normalize(value).ok_or_else(|| {
        let shown: String = value.chars().take(64).collect();
        format!("PKO_PostStatus/{element} holds `{shown}`, which is not a timestamp")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::envelope::parse_envelope;
    use base64::Engine;

    fn envelope_with(handling: &str, payload: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
        format!(
            r#"<k:Haendelsesbesked xmlns:k="urn:oio:besked:kuvert:1.0" xmlns="urn:oio:sagdok:3.0.0"><k:BeskedId><UUIDIdentifikator>b</UUIDIdentifikator></k:BeskedId><k:Beskedkuvert><k:Filtreringsdata><k:Beskedtype><UUIDIdentifikator>{BESKEDTYPE}</UUIDIdentifikator></k:Beskedtype><k:BeskedAnsvarligAktoer><UUIDIdentifikator>afd21f3d-11c7-4f51-b2a6-f31d6480a9fb</UUIDIdentifikator></k:BeskedAnsvarligAktoer><k:ObjektRegistrering><k:ObjektRegistreringId><UUIDIdentifikator>reg</UUIDIdentifikator></k:ObjektRegistreringId><k:Registreringstidspunkt><TidsstempelDatoTid>2026-03-01T10:00:00Z</TidsstempelDatoTid></k:Registreringstidspunkt><k:ObjektId><UUIDIdentifikator>letter-from-envelope</UUIDIdentifikator></k:ObjektId><k:ObjektHandling><UUIDIdentifikator>{handling}</UUIDIdentifikator></k:ObjektHandling></k:ObjektRegistrering></k:Filtreringsdata></k:Beskedkuvert><k:Beskeddata><Base64 xmlns="urn:besked:kuvert:1.0">{encoded}</Base64></k:Beskeddata></k:Haendelsesbesked>"#
        )
        .into_bytes()
    }

    fn status_of(handling: &str, payload: &str) -> Result<PostStatus, String> {
        parse_post_status(&parse_envelope(&envelope_with(handling, payload)).expect("envelope"))
    }

    #[test]
    fn reads_every_field_of_a_physical_letter() {
        let payload = r#"<PKO_PostStatus xmlns="http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"><TransmissionId>t</TransmissionId><MessageUUID>m</MessageUUID><MessageId>dp</MessageId><AfsendelseIdentifikator>AF1</AfsendelseIdentifikator><ForsendelseIdentifikator>F1</ForsendelseIdentifikator><ForsendelseTypeIdentifikator>17</ForsendelseTypeIdentifikator><BrugerNavn>kbh</BrugerNavn><EnhedTekst>Borgerservice</EnhedTekst><AfsenderSystemIdentifikator>sys</AfsenderSystemIdentifikator><KanalKode>Fysisk Post</KanalKode><TransaktionsDatoTid>2026-03-01T11:30:00+01:00</TransaktionsDatoTid><TransaktionsStatusKode>Modtaget Post Danmark</TransaktionsStatusKode><CorrelationId>t</CorrelationId><FejlDetaljer/><ForsendelseHaendelseSamling><ForsendelseHaendelse><ForsendelseHaendelseTypeKode>Porto</ForsendelseHaendelseTypeKode><ForsendelseHaendelseDatoTid>2026-03-01T11:00:00</ForsendelseHaendelseDatoTid><ForsendelseHaendelseBeloeb>12.50</ForsendelseHaendelseBeloeb></ForsendelseHaendelse></ForsendelseHaendelseSamling></PKO_PostStatus>"#;
        let status = status_of("e94a0a8b-60a0-42ad-8b83-52c9e15d0fb3", payload).expect("valid");
        assert_eq!(
            status,
            PostStatus {
                message_uuid: Some("m".into()),
                transmission_id: Some("t".into()),
                message_id: Some("dp".into()),
                correlation_id: Some("t".into()),
                kanal: Some("Fysisk Post".into()),
                status: Some("Modtaget Post Danmark".into()),
                event: Some("Modtaget Post Danmark".into()),
                event_uuid: Some("e94a0a8b-60a0-42ad-8b83-52c9e15d0fb3".into()),
                is_final: true,
                outcome: Some("delivered"),
                occurred_at: Some("2026-03-01T10:30:00.000Z".into()),
                fejl_kode: None,
                fejl_tekst: None,
                afsendelse_id: Some("AF1".into()),
                forsendelse_id: Some("F1".into()),
                forsendelse_type_id: Some("17".into()),
                bruger_navn: Some("kbh".into()),
                enhed_tekst: Some("Borgerservice".into()),
                afsender_system_id: Some("sys".into()),
                producer: Some("Strålfors"),
                producer_uuid: Some("afd21f3d-11c7-4f51-b2a6-f31d6480a9fb".into()),
                postal_events: vec![PostalEvent {
                    type_kode: Some("Porto".into()),
                    occurred_at: Some("2026-03-01T10:00:00.000Z".into()),
                    beloeb: Some("12.50".into()),
                }],
            }
        );
    }

    #[test]
    fn falls_back_to_the_envelope_without_a_payload_of_this_type() {
        let status = status_of("eb866ca2-b871-4387-b501-12cde577bd58", "<other/>").expect("valid");
        assert_eq!(status.message_uuid.as_deref(), Some("letter-from-envelope"));
        assert_eq!(status.transmission_id.as_deref(), Some("reg"));
        assert_eq!(
            status.occurred_at.as_deref(),
            Some("2026-03-01T10:00:00.000Z")
        );
        assert_eq!(status.event.as_deref(), Some("Modtaget Digital Post"));
        assert!(!status.is_final);
    }

    #[test]
    fn unknown_event_uuid_uses_the_status_text() {
        let payload = r#"<PKO_PostStatus xmlns="http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"><TransaktionsStatusKode>Fejlet</TransaktionsStatusKode><FejlDetaljer><FejlKode>memo.invalid</FejlKode><FejlTekst>tag &lt;x&gt;</FejlTekst></FejlDetaljer></PKO_PostStatus>"#;
        let status = status_of("00000000-0000-0000-0000-000000000000", payload).expect("valid");
        assert_eq!(status.event.as_deref(), Some("Fejlet"));
        assert_eq!(status.outcome, Some("failed"));
        assert!(status.is_final);
        assert_eq!(status.fejl_kode.as_deref(), Some("memo.invalid"));
        assert_eq!(status.fejl_tekst.as_deref(), Some("tag <x>"));
    }

    #[test]
    fn bad_event_time_is_refused() {
        let payload = r#"<PKO_PostStatus xmlns="http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"><TransaktionsDatoTid>i går</TransaktionsDatoTid></PKO_PostStatus>"#;
        let error = status_of("x", payload).expect_err("bad time");
        assert!(
            error.contains("TransaktionsDatoTid holds `i går`"),
            "{error}"
        );
    }
}
