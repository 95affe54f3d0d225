//! A year of a municipality's traffic, generated in arrival order: about 3 statuses per letter
//! (sent, received, then final: 5 % failed, 3 % never final, the rest delivered or posted),
//! the statuses of neighbouring letters interleaved, and a registration now and then. Included
//! by path by the benchmarks that build or feed a large replica.

use crate::sample::{Status, UuidGenerator, status_envelope_with};

/// Start of the generated year.
pub const YEAR_START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// A time as beskedhent stores times.
pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string()
}

/// A year of a municipality's traffic, in arrival order.
pub struct Traffic {
    ids: UuidGenerator,
    letters: Vec<String>,
    /// The next step: letter `step` is sent.
    step: usize,
    total_letters: usize,
    pending: std::collections::VecDeque<String>,
    pub statuses: usize,
    pub registrations: usize,
    pub some_letter: String,
    pub some_party: String,
}

impl Traffic {
    /// A year of about `statuses` status messages.
    pub fn new(statuses: usize) -> Traffic {
        Traffic {
            ids: UuidGenerator::new(0x1e77e5),
            letters: Vec::new(),
            step: 0,
            total_letters: statuses / 3,
            pending: std::collections::VecDeque::new(),
            statuses: 0,
            registrations: 0,
            some_letter: String::new(),
            some_party: String::new(),
        }
    }

    /// The next envelope, or None when the year is over. Each step sends letter k's first
    /// status, letter k-1's second and letter k-2's final one, and now and then a registration.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<String> {
        if let Some(envelope) = self.pending.pop_front() {
            return Some(envelope);
        }
        let k = self.step;
        if k >= self.total_letters + 2 {
            return None;
        }
        self.step += 1;
        let span = 365 * 86_400 / self.total_letters.max(1) as i64;
        let sent_at = |k: usize| YEAR_START + k as i64 * span;
        if k < self.total_letters {
            let letter = self.ids.next_uuid();
            if k == self.total_letters / 2 {
                self.some_letter = letter.clone();
            }
            self.letters.push(letter);
            self.push(k, sent_at(k), Status::SENT);
        }
        if k >= 1 && k - 1 < self.total_letters {
            self.push(k - 1, sent_at(k - 1) + 60, Status::RECEIVED);
        }
        if k >= 2 && k - 2 < self.total_letters {
            let n = k - 2;
            let hash = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58; // 0..63
            let status = match hash {
                0..=2 => Status::FAILED,
                3 => Status::SENT, // never final (stalled), about 3 %
                4..=9 => Status::POSTED,
                _ => Status::DELIVERED,
            };
            self.push(n, sent_at(n) + 3600 + (hash as i64) * 1800, status);
        }
        if k.is_multiple_of(100) {
            let party = format!("{:010}", 101_010_000 + (k / 100) % 10_000);
            if self.some_party.is_empty() {
                self.some_party = party.clone();
            }
            let at = sent_at(k);
            self.pending.push_back(registration(
                &self.ids.next_uuid(),
                &party,
                &format_time(at),
                (k / 100) % 3 != 2,
            ));
            self.registrations += 1;
        }
        self.pending.pop_front()
    }

    fn push(&mut self, letter: usize, at: i64, status: Status<'static>) {
        let at = format_time(at);
        let besked_id = self.ids.next_uuid();
        let envelope = status_envelope_with(
            &besked_id,
            &self.letters[letter],
            &Status { at: &at, ..status },
        );
        self.statuses += 1;
        self.pending.push_back(envelope);
    }
}

/// A DigitalPostTilmelding envelope (the test identifiers of config.toml).
fn registration(besked_id: &str, cpr: &str, at: &str, registered: bool) -> String {
    let handling = if registered {
        "0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d"
    } else {
        "0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d"
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:oio="urn:oio:sagdok:3.0.0"><BeskedId><oio:UUIDIdentifikator>{besked_id}</oio:UUIDIdentifikator></BeskedId><BeskedVersion>1.0</BeskedVersion><Beskedkuvert><Filtreringsdata><Beskedtype><oio:UUIDIdentifikator>5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d</oio:UUIDIdentifikator></Beskedtype><ObjektRegistrering><Registreringstidspunkt><oio:TidsstempelDatoTid>{at}</oio:TidsstempelDatoTid></Registreringstidspunkt><ObjektId><oio:URNIdentifikator>urn:oio:cpr-nr:{cpr}</oio:URNIdentifikator></ObjektId><ObjektHandling><oio:UUIDIdentifikator>{handling}</oio:UUIDIdentifikator></ObjektHandling></ObjektRegistrering></Filtreringsdata><Leveranceinformation><Dannelsestidspunkt><oio:TidsstempelDatoTid>{at}</oio:TidsstempelDatoTid></Dannelsestidspunkt></Leveranceinformation></Beskedkuvert></Haendelsesbesked>"#
    )
}

/// A replica built from `traffic` through the real write path (decoded and committed in
/// batches of 1,000, as `import` does), with its write rate over the first and the last
/// 100,000 messages.
pub struct Built {
    pub store: beskedhent::replica::Store,
    pub seconds: f64,
    pub first_rate: f64,
    pub last_rate: f64,
}

/// Builds the replica `path` from all of `traffic`.
pub fn build_replica(
    path: &std::path::Path,
    decoder: &beskedhent::decode::message::Decoder,
    traffic: &mut Traffic,
) -> Built {
    use beskedhent::replica::{Durability, Incoming, Raw, Store};
    let mut store = Store::open(path, None).expect("open");
    store
        .set_durability(Durability::Normal)
        .expect("durability");
    let started = std::time::Instant::now();
    let mut window = std::time::Instant::now();
    let (mut first_rate, mut last_rate) = (0.0, 0.0);
    let mut written = 0usize;
    let mut batch = Vec::with_capacity(1000);
    let flush = |batch: &mut Vec<Incoming>, store: &mut Store| {
        store
            .write_batch("bench", "2027-01-01T00:00:00.000Z", batch)
            .expect("write");
        batch.clear();
    };
    while let Some(raw) = traffic.next() {
        batch.push(Incoming {
            origin: String::new(),
            decoded: decoder.decode(raw.as_bytes()),
            raw: Raw::Bytes(raw.into_bytes()),
        });
        if batch.len() == 1000 {
            flush(&mut batch, &mut store);
            written += 1000;
            if written.is_multiple_of(100_000) {
                let rate = 100_000.0 / window.elapsed().as_secs_f64();
                if written == 100_000 {
                    first_rate = rate;
                }
                last_rate = rate;
                window = std::time::Instant::now();
            }
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut store);
    }
    Built {
        store,
        seconds: started.elapsed().as_secs_f64(),
        first_rate,
        last_rate,
    }
}
