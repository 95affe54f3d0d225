//! `lookup PARTY... | --from FILE | --verify-feed`: asks SF1601 PostForespoerg whether parties
//! are registered for Digital Post and NemSMS, keeps every answer in `registration_lookup`, and
//! checks the registration feed's mapping against the answers.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::exit;
use crate::pull::lookup::{Channel, Failure, LookupClient, Party};
use crate::replica::Store;
use crate::replica::lookups::Lookup;

/// How the answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// What `lookup` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub parties: Vec<String>,
    pub from: Option<PathBuf>,
    pub format: Format,
    /// Answers younger than this are not asked for again.
    pub max_age: chrono::Duration,
    pub verify_feed: bool,
    pub sample: u32,
}

impl From<crate::commands::cli::LookupArgs> for Options {
    fn from(args: crate::commands::cli::LookupArgs) -> Options {
        Options {
            parties: args.parties,
            from: args.from,
            format: match (args.json, args.csv) {
                (true, _) => Format::Json,
                (_, true) => Format::Csv,
                _ => Format::Table,
            },
            max_age: args.max_age,
            verify_feed: args.verify_feed,
            sample: args.sample,
        }
    }
}

/// At most this many invalid numbers are listed.
const SHOWN_INVALID: usize = 10;

pub fn run(config: &Config, options: &Options) -> Result<u8> {
    let Some(lookup) = &config.lookup else {
        bail!(
            "`{}` has no [lookup] section; add one with the service platform's address, e.g. url = \"https://exttest.serviceplatformen.dk\" (see docs/lookup.md)",
            config.path.display()
        );
    };
    let sts = config
        .sts()
        .ok_or_else(|| anyhow::anyhow!("[lookup] needs [sts]"))?;
    if options.verify_feed {
        let mut store = Store::open(&config.database, config.event_rules())?;
        let client = LookupClient::new(lookup, sts)?;
        let pace = Pace::new(lookup.per_second);
        return super::runtime()?.block_on(verify_feed(&mut store, &client, pace, options.sample));
    }
    // Every number is checked before anything is sent.
    let Some(count) = check_parties(options)? else {
        return Ok(exit::USAGE);
    };
    let mut store = Store::open(&config.database, config.event_rules())?;
    let client = LookupClient::new(lookup, sts)?;
    let progress = crate::progress::Progress::start("lookup", "questions");
    progress
        .counter()
        .set_total(count * Channel::ALL.len() as u64);
    let mut asker = Asker {
        store: &mut store,
        client: &client,
        format: options.format,
        since: crate::time::format_utc(chrono::Utc::now() - options.max_age),
        pace: Pace::new(lookup.per_second),
        counter: progress.counter(),
        tally: Tally::default(),
    };
    if options.format == Format::Csv {
        crate::say_data!(
            "party,party_type,channel,registered,asked_at,transaction_id,source,error\r\n"
        );
    }
    super::runtime()?.block_on(async {
        for (_, party) in parties(options)? {
            if !asker.party(&party?).await? {
                break;
            }
        }
        anyhow::Ok(())
    })?;
    drop(progress);
    let tally = asker.tally;
    // Standard output holds only the answers in the machine formats.
    match options.format {
        Format::Table => crate::sayln!("{}", tally.line()),
        _ => tracing::info!("{}", tally.line()),
    }
    Ok(if tally.failed > 0 || tally.stopped {
        exit::FEED_FAILED
    } else {
        exit::OK
    })
}

/// Checks every number (of the arguments, or streamed from `--from`); how many there are, or
/// None after listing the invalid ones.
fn check_parties(options: &Options) -> Result<Option<u64>> {
    let mut count = 0;
    let mut invalid = Vec::new();
    for (line, party) in parties(options)? {
        match party {
            Ok(_) => count += 1,
            Err(error) => invalid.push((line, error)),
        }
    }
    if count == 0 && invalid.is_empty() {
        crate::logging::print_error(
            "no numbers given: give CPR or CVR numbers, or --from FILE with one a line",
        );
        return Ok(None);
    }
    if invalid.is_empty() {
        return Ok(Some(count));
    }
    let place = |line: usize| match &options.from {
        Some(file) => format!("{} line {line}", file.display()),
        None => format!("argument {line}"),
    };
    // On standard error: standard output may be a CSV being written.
    for (line, error) in invalid.iter().take(SHOWN_INVALID) {
        crate::logging::print_error(&format!("{}: {error:#}", place(*line)));
    }
    if invalid.len() > SHOWN_INVALID {
        crate::logging::print_error(&format!("... and {} more", invalid.len() - SHOWN_INVALID));
    }
    crate::logging::print_error(&format!(
        "nothing was asked: {} of {} numbers are not CPR (10 digits) or CVR (8 digits) numbers",
        invalid.len(),
        invalid.len() as u64 + count
    ));
    Ok(None)
}

/// The parties to ask about, in order, each with where it was (the argument's or the line's
/// number): the arguments, or the lines of `--from` read one at a time (empty lines and `#`
/// comments skipped), each parsed.
type Numbered = (usize, Result<Party>);

fn parties(options: &Options) -> Result<Box<dyn Iterator<Item = Numbered> + '_>> {
    let parse = |text: &str| Party::parse(text).map_err(anyhow::Error::msg);
    let Some(file) = &options.from else {
        return Ok(Box::new(
            options
                .parties
                .iter()
                .enumerate()
                .map(move |(index, text)| (index + 1, parse(text))),
        ));
    };
    let reader = open_list(file)?;
    Ok(Box::new(reader.lines().enumerate().filter_map(
        move |(index, line)| match line {
            Err(error) => Some((index + 1, Err(anyhow::anyhow!("cannot read it: {error}")))),
            Ok(line) if line.trim().is_empty() || line.trim_start().starts_with('#') => None,
            // A byte order mark (a list saved by a spreadsheet) is not part of the number.
            Ok(line) => Some((index + 1, parse(line.trim_start_matches('\u{feff}')))),
        },
    )))
}

/// `--from FILE`: a regular file (it is read twice: checked, then asked about).
fn open_list(file: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so that a FIFO is refused instead of waited on.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .with_context(|| format!("cannot read `--from` `{}`", file.display()))?;
    let kind = opened.metadata()?.file_type();
    if !kind.is_file() {
        bail!(
            "`--from` `{}` is {}, not a regular file: every number is checked before the first is asked, so the list is read twice; copy it into a file",
            file.display(),
            crate::files::kind(&kind)
        );
    }
    Ok(std::io::BufReader::new(opened))
}

/// Keeps to `per_second` questions a second.
pub struct Pace {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Pace {
    pub fn new(per_second: f64) -> Pace {
        Pace {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: tokio::time::Instant::now(),
        }
    }

    /// Waits for the next question's turn.
    pub async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + self.interval;
    }
}

/// What a bulk lookup did.
#[derive(Debug, Default)]
struct Tally {
    asked: u64,
    kept: u64,
    failed: u64,
    /// A 401 or 403 that a new token did not cure: the rest was not asked.
    stopped: bool,
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "lookup: {} answered by PostForespoerg, {} answered earlier (within --max-age), {} failed{}",
            self.asked,
            self.kept,
            self.failed,
            if self.stopped {
                "; stopped: the rest was not asked"
            } else {
                ""
            }
        )
    }
}

struct Asker<'a> {
    store: &'a mut Store,
    client: &'a LookupClient,
    format: Format,
    /// Answers at or after this are kept, not asked for again.
    since: String,
    pace: Pace,
    counter: crate::progress::Counter,
    tally: Tally,
}

impl Asker<'_> {
    /// Asks about `party` on every channel; false when the rest must not be asked.
    async fn party(&mut self, party: &Party) -> Result<bool> {
        for channel in Channel::ALL {
            self.counter.add(1);
            if let Some(kept) =
                self.store
                    .lookup_since(&party.number, channel.as_str(), &self.since)?
            {
                self.tally.kept += 1;
                self.show(party, channel, Ok(&kept), "earlier");
                continue;
            }
            self.pace.wait().await;
            match self.client.ask(party, channel).await {
                Ok(answer) => {
                    let lookup = Lookup {
                        party: party.number.clone(),
                        party_type: party.kind().to_owned(),
                        channel: channel.as_str().to_owned(),
                        registered: answer.registered,
                        asked_at: answer.asked_at,
                        transaction_id: answer.transaction_id,
                    };
                    self.store.record_lookup(&lookup)?;
                    self.tally.asked += 1;
                    self.show(party, channel, Ok(&lookup), "postforespoerg");
                }
                Err(failure) => {
                    self.tally.failed += 1;
                    tracing::warn!(
                        "lookup of {} on {}: {failure}",
                        party.number,
                        channel.as_str()
                    );
                    self.show(party, channel, Err(&failure), "");
                    if failure.stops() {
                        self.tally.stopped = true;
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// One line of output: the party and channel, and the answer or the failure.
    fn show(
        &self,
        party: &Party,
        channel: Channel,
        answer: Result<&Lookup, &Failure>,
        source: &str,
    ) {
        let error = answer
            .err()
            .map(|failure| crate::mask::mask_cpr(&failure.to_string()).into_owned());
        let found = answer.ok();
        match self.format {
            Format::Table => {
                let what = match (found, &error) {
                    (Some(lookup), _) => format!(
                        "{}{}",
                        if lookup.registered {
                            "registered"
                        } else {
                            "not registered"
                        },
                        if source == "earlier" {
                            format!(
                                " (answered {})",
                                crate::time::local_display(&lookup.asked_at)
                            )
                        } else {
                            String::new()
                        }
                    ),
                    (None, Some(error)) => format!("FAILED: {error}"),
                    (None, None) => String::new(),
                };
                crate::say_data!("{}  {:<11}  {what}\n", party.number, channel.as_str());
            }
            Format::Json => {
                let mut object = serde_json::json!({
                    "party": party.number,
                    "party_type": party.kind(),
                    "channel": channel.as_str(),
                });
                if let Some(lookup) = found {
                    object["registered"] = lookup.registered.into();
                    object["asked_at"] = lookup.asked_at.clone().into();
                    object["transaction_id"] = lookup.transaction_id.clone().into();
                    object["source"] = source.into();
                }
                if let Some(error) = &error {
                    object["error"] = error.clone().into();
                }
                crate::say_data!("{object}\n");
            }
            Format::Csv => {
                let fields = [
                    party.number.clone(),
                    party.kind().to_owned(),
                    channel.as_str().to_owned(),
                    found.map_or(String::new(), |l| u8::from(l.registered).to_string()),
                    found.map_or(String::new(), |l| l.asked_at.clone()),
                    found.map_or(String::new(), |l| l.transaction_id.clone()),
                    if found.is_some() {
                        source.to_owned()
                    } else {
                        String::new()
                    },
                    error.unwrap_or_default(),
                ];
                let line: Vec<String> = fields.iter().map(|f| super::rows::csv(f)).collect();
                crate::say_data!("{}\r\n", line.join(","));
            }
        }
    }
}

/// What `--verify-feed` found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Parties the feed holds a registration change of (at most the sample).
    pub sampled: usize,
    pub agree: u32,
    /// The feed's state, and what PostForespoerg answered.
    pub disagree: Vec<(crate::replica::lookups::FeedState, bool)>,
    /// Why questions failed (masked).
    pub failures: Vec<String>,
}

impl Verified {
    fn compared(&self) -> u32 {
        self.agree + self.disagree.len() as u32
    }

    /// Whether most answers are the opposite of the feed.
    fn looks_swapped(&self) -> bool {
        !self.disagree.is_empty() && self.disagree.len() as u32 * 3 >= self.compared() * 2
    }

    /// The `[types.*]` sections of the channels that disagree.
    fn sections(&self) -> String {
        let channels: std::collections::BTreeSet<&str> = self
            .disagree
            .iter()
            .map(|(state, _)| state.channel.as_str())
            .collect();
        channels
            .iter()
            .map(|channel| format!("[types.{channel}_registration]"))
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// Asks about the `sample` parties whose latest feed change is the most recent, keeps the
/// answers, and compares them with the feed.
pub async fn verify(
    store: &mut Store,
    client: &LookupClient,
    pace: &mut Pace,
    sample: u32,
) -> Result<Verified> {
    let states = store.recent_feed_states(sample)?;
    let mut verified = Verified {
        sampled: states.len(),
        ..Verified::default()
    };
    for state in states {
        let (Ok(party), Some(channel)) =
            (Party::parse(&state.party), Channel::named(&state.channel))
        else {
            continue;
        };
        pace.wait().await;
        match client.ask(&party, channel).await {
            Ok(answer) => {
                store.record_lookup(&Lookup {
                    party: party.number.clone(),
                    party_type: party.kind().to_owned(),
                    channel: channel.as_str().to_owned(),
                    registered: answer.registered,
                    asked_at: answer.asked_at.clone(),
                    transaction_id: answer.transaction_id.clone(),
                })?;
                if answer.registered == state.registered {
                    verified.agree += 1;
                } else {
                    verified.disagree.push((state, answer.registered));
                }
            }
            Err(failure) => {
                let stop = failure.stops();
                verified.failures.push(
                    crate::mask::mask_cpr(&format!(
                        "{} on {}: {failure}",
                        party.number,
                        channel.as_str()
                    ))
                    .into_owned(),
                );
                if stop {
                    break;
                }
            }
        }
    }
    Ok(verified)
}

/// `--verify-feed`: exit 0 when all answers agree, 1 when any disagrees (with the likely cause
/// when most do), 4 when questions failed and none disagreed.
async fn verify_feed(
    store: &mut Store,
    client: &LookupClient,
    mut pace: Pace,
    sample: u32,
) -> Result<u8> {
    let verified = verify(store, client, &mut pace, sample).await?;
    if verified.sampled == 0 {
        crate::sayln!(
            "the replica holds no registration changes to check; configure [types.*] and pull the registration feeds first"
        );
        return Ok(exit::OK);
    }
    for failure in &verified.failures {
        crate::sayln!("FAILED: {failure}");
    }
    for (state, answered) in &verified.disagree {
        crate::sayln!(
            "{} on {}: the feed says {} (changed {}), PostForespoerg says {}",
            state.party,
            state.channel,
            registered_word(state.registered),
            crate::time::local_display(&state.changed_at),
            registered_word(*answered)
        );
    }
    crate::sayln!(
        "verify-feed: {} of {} answers agree with the registration feed ({} failed)",
        verified.agree,
        verified.compared(),
        verified.failures.len()
    );
    if verified.looks_swapped() {
        crate::sayln!(
            "most answers are the opposite of the feed: the `registered` and `deregistered` ObjektHandling identifiers of {} are probably swapped. Swap them in the configuration, then run `beskedhent reprocess`, which derives every registration again; then `beskedhent lookup --verify-feed` again",
            verified.sections()
        );
    }
    Ok(if !verified.disagree.is_empty() {
        exit::ERROR
    } else if !verified.failures.is_empty() {
        exit::FEED_FAILED
    } else {
        exit::OK
    })
}

/// What `check` says of `[lookup]`: a few of the feed's parties asked about. Ok, a warning
/// (disagreement) or a failure, as a line.
pub async fn check_line(config: &Config) -> std::result::Result<String, (bool, String)> {
    let (Some(lookup), Some(sts)) = (&config.lookup, config.sts()) else {
        return Err((false, "no [lookup]".to_owned()));
    };
    let client = LookupClient::new(lookup, sts).map_err(|e| (true, format!("[lookup]: {e:#}")))?;
    let mut store = Store::open(&config.database, config.event_rules())
        .map_err(|e| (true, format!("[lookup]: {e:#}")))?;
    let mut pace = Pace::new(lookup.per_second);
    let verified = verify(&mut store, &client, &mut pace, 3)
        .await
        .map_err(|e| (true, format!("[lookup]: {e:#}")))?;
    if let Some(failure) = verified.failures.first() {
        return Err((true, format!("PostForespoerg at {}: {failure}", lookup.url)));
    }
    if !verified.disagree.is_empty() {
        return Err((
            false,
            format!(
                "PostForespoerg disagrees with the registration feed about {} of {} parties; run `beskedhent lookup --verify-feed`{}",
                verified.disagree.len(),
                verified.compared(),
                if verified.looks_swapped() {
                    format!(" (the identifiers of {} look swapped)", verified.sections())
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(if verified.sampled == 0 {
        format!(
            "[lookup] {}: nothing in the registration feed to check it against yet",
            lookup.url
        )
    } else {
        format!(
            "PostForespoerg at {} agrees with the registration feed about {} of {} parties",
            lookup.url,
            verified.agree,
            verified.compared()
        )
    })
}

fn registered_word(registered: bool) -> &'static str {
    if registered {
        "registered"
    } else {
        "not registered"
    }
}
