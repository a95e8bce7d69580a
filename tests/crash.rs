//! kill -9 under load, exactly-once progress (RELIABILITY.md, test matrix row 1), bounded.
//!
//! The real `lms` binary runs as a child process. Concurrent clients record progress events
//! (unary and batched) with unique event ids and journal each one as INVOKED before its call and
//! OK, FAILED or INDETERMINATE after. The server is killed with SIGKILL at random moments and
//! restarted on the same data dir and database (SQLite `synchronous` alternates FULL and NORMAL
//! between starts). At the end every INDETERMINATE event is resolved by replaying it, a sample of
//! acknowledged events is replayed too, the server is killed once more, and the database is read
//! directly: every acknowledged event is stored exactly once, no refused event is stored, nothing
//! else is, the derived counts agree with the log, and SQLite passes `PRAGMA integrity_check`.
//!
//! SQLite by default; PostgreSQL when `LMS_TEST_DATABASE_URL` is set (a database of its own is
//! made beside it and dropped at the end). `LMS_CRASH_SEED` replays a run's random choices (event
//! content, call mix, kill delays; not the scheduling); `LMS_CRASH_CYCLES` sets the number of kills.

#[path = "crash/database.rs"]
mod database;
#[path = "crash/fixtures.rs"]
mod fixtures;
#[path = "crash/journal.rs"]
mod journal;
#[path = "crash/server.rs"]
mod server;
#[path = "crash/workload.rs"]
mod workload;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::RangeInclusive,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lms::pb::{self, progress_service_client::ProgressServiceClient};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};
use tokio::{sync::watch, time::timeout};
use tonic::transport::Channel;

use database::{CrashDatabase, event_counts, sqlite_integrity, stored_event_ids};
use fixtures::authorized;
use journal::{Entry, Journal, Outcome};
use server::{Launcher, tail};
use workload::{CALL_TIMEOUT, Client, Target, batch_outcomes, progress_client};

/// Enrolments the events spread over.
const LEARNERS: usize = 64;
/// Concurrent load clients.
const CLIENTS: usize = 8;
/// Kills per run unless `LMS_CRASH_CYCLES` says otherwise.
const DEFAULT_CYCLES: u64 = 4;
/// Milliseconds of load between a server's first ack and its SIGKILL.
const KILL_DELAY_MS: RangeInclusive<u64> = 300..=1500;
/// Longest wait for the clients to get an ack from a (re)started server.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for the clients to finish their last call.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Events per replay call.
const REPLAY_CHUNK: usize = 200;
/// Replays of an event that keeps getting no definite answer from a healthy server.
const REPLAY_ATTEMPTS: usize = 5;
/// Acknowledged events replayed to check the answer is the first ack.
const ACKED_REPLAYS: usize = 200;

/// SQLite `synchronous` of the `start`th server start: FULL and NORMAL alternate.
fn synchronous(start: usize) -> &'static str {
    if start.is_multiple_of(2) {
        "full"
    } else {
        "normal"
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok().filter(|value| !value.is_empty())?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_progress_survives_kill_9_exactly_once() {
    let seed = env_number("LMS_CRASH_SEED").unwrap_or_else(rand::random);
    let cycles = env_number("LMS_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES) as usize;
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("temp dir");
    let database = CrashDatabase::fresh(temp.path()).await;
    let backend = database.backend_name();
    eprintln!(
        "crash[{backend}]: seed {seed} (LMS_CRASH_SEED={seed} replays its choices), {cycles} kills"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut launcher = Launcher::new(temp.path(), &database.url);
    let token: Arc<str> = launcher.admin_token().await.into();
    let mut server = launcher.start(synchronous(0)).await;
    let fixture = Arc::new(fixtures::build(server.addr, &token, LEARNERS).await);

    // Load, and kills.
    let journal = Arc::new(Journal::new());
    let stop = Arc::new(AtomicBool::new(false));
    let targets = watch::Sender::new(Some(Target {
        generation: 0,
        addr: server.addr,
    }));
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|index| {
            let client = Client {
                seed: seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                fixture: fixture.clone(),
                token: token.clone(),
                targets: targets.subscribe(),
                journal: journal.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(client.run())
        })
        .collect();
    let mut acked = journal.acked();
    let mut delays = Vec::new();
    for generation in 0..=cycles {
        // The delay runs from this server's first ack: the clients did (re)connect to it.
        // (The watch's read guard is dropped at once: a client's ack takes its write lock.)
        let first_ack = timeout(
            RECONNECT_DEADLINE,
            acked.wait_for(|acked| acked.get(generation).is_some_and(|count| *count > 0)),
        )
        .await
        .is_ok_and(|waited| waited.is_ok());
        if !first_ack {
            panic!(
                "seed {seed}: no ack from server start {generation} within {RECONNECT_DEADLINE:?}; \
                 violations so far {:?}; its log:\n{}",
                journal.violations(),
                tail(&server.log)
            );
        }
        let delay = rng.random_range(KILL_DELAY_MS);
        delays.push(delay);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if generation == cycles {
            break;
        }
        targets.send_replace(None);
        server.kill().await;
        server = launcher.start(synchronous(generation + 1)).await;
        targets.send_replace(Some(Target {
            generation: generation + 1,
            addr: server.addr,
        }));
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for client in clients {
        calls += timeout(STOP_DEADLINE, client)
            .await
            .expect("clients finish their last call")
            .expect("client task");
    }
    let entries = journal.entries();
    let acked_per_start = acked.borrow().clone();

    // Before any replay, with the last server up: what the log holds agrees with the journal.
    let mut violations = Vec::new();
    let connection = database.connect().await;
    let before: HashSet<String> = stored_event_ids(&connection).await.into_iter().collect();
    connection.close().await.ok();
    let mut figures = Figures::default();
    check_journal(&entries, &before, &mut violations, &mut figures);

    // Resolve every INDETERMINATE event by replaying it; replay a sample of acked events.
    let mut client = progress_client(server.addr);
    let unresolved: Vec<&Entry> = entries
        .values()
        .filter(|entry| matches!(entry.outcome, Outcome::Indeterminate(_) | Outcome::Invoked))
        .collect();
    let resolved = replay(&mut client, &token, &journal, &unresolved).await;
    for (event_id, outcome) in &resolved {
        let entry = &entries[event_id];
        match (outcome, entry.valid) {
            (Outcome::Ok(_), true) => figures.resolved_ok += 1,
            (Outcome::Failed(_), false) => figures.resolved_refused += 1,
            (Outcome::Ok(_), false) => violations.push(format!(
                "{event_id}: built to be refused, but its replay was acknowledged"
            )),
            (Outcome::Failed(reason), true) => violations.push(format!(
                "{event_id}: replay of an INDETERMINATE event refused: {reason}"
            )),
            (other, _) => violations.push(format!(
                "{event_id}: still no definite answer after {REPLAY_ATTEMPTS} replays: {other:?}"
            )),
        }
    }
    let mut acked_sample: Vec<&Entry> = entries
        .values()
        .filter(|entry| matches!(entry.outcome, Outcome::Ok(_)))
        .collect();
    acked_sample.shuffle(&mut rng);
    acked_sample.truncate(ACKED_REPLAYS);
    let replayed = replay(&mut client, &token, &journal, &acked_sample).await;
    for entry in &acked_sample {
        let event_id = &entry.event.event_id;
        match (&entry.outcome, &replayed[event_id]) {
            (Outcome::Ok(first), Outcome::Ok(again)) if first == again => {}
            (first, again) => violations.push(format!(
                "{event_id}: replay of an acknowledged event answered {again:?}, first {first:?}"
            )),
        }
    }
    drop(client);

    // Kill once more (the replays' acks must survive too), then read the database directly.
    server.kill().await;
    let connection = database.connect().await;
    let rows = stored_event_ids(&connection).await;
    let counts = event_counts(&connection).await;
    let integrity = sqlite_integrity(&connection).await;
    connection.close().await.ok();
    figures.stored = rows.len();
    check_final(&entries, &resolved, &rows, &mut violations);
    for (enrollment, (logged, summary)) in &counts {
        if summary.unwrap_or(0) != *logged {
            violations.push(format!(
                "enrollment {enrollment}: {logged} events in the log, summary event_count {summary:?}"
            ));
        }
    }
    if let Some(lines) = &integrity
        && lines != &["ok"]
    {
        violations.push(format!("PRAGMA integrity_check: {lines:?}"));
    }
    violations.extend(journal.violations());

    let acked_total = figures.acked + figures.resolved_ok;
    eprintln!(
        "crash[{backend}]: seed={seed} kills={cycles} calls={calls} events={} acked={} refused={} \
         indeterminate={} (stored before replay {}, resolved ok {} refused {}) stored={} \
         (expected {acked_total}) acked_per_start={acked_per_start:?} kill_delays_ms={delays:?} \
         integrity={} violations={} wall={:.1}s; indeterminate answers: {:?}",
        entries.len(),
        figures.acked,
        figures.refused,
        figures.indeterminate,
        figures.stored_indeterminate,
        figures.resolved_ok,
        figures.resolved_refused,
        figures.stored,
        integrity.map_or_else(|| "n/a".to_owned(), |lines| lines.join(",")),
        violations.len(),
        started.elapsed().as_secs_f64(),
        figures.indeterminate_kinds,
    );
    if !violations.is_empty() {
        let kept = temp.keep();
        panic!(
            "seed {seed}: {} violations of exactly-once progress (data dir and server logs kept in {}):\n{}",
            violations.len(),
            kept.display(),
            violations
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Figures of a run.
#[derive(Debug, Default)]
struct Figures {
    acked: usize,
    refused: usize,
    indeterminate: usize,
    stored_indeterminate: usize,
    resolved_ok: usize,
    resolved_refused: usize,
    stored: usize,
    /// INDETERMINATE answers by the start of their status.
    indeterminate_kinds: BTreeMap<String, usize>,
}

/// Checks the journal against the events stored before any replay.
fn check_journal(
    entries: &BTreeMap<String, Entry>,
    stored: &HashSet<String>,
    violations: &mut Vec<String>,
    figures: &mut Figures,
) {
    for (event_id, entry) in entries {
        let present = stored.contains(event_id);
        let call = if entry.unary { "unary" } else { "batch" };
        let generation = entry.generation;
        match &entry.outcome {
            Outcome::Ok(_) => {
                figures.acked += 1;
                if !entry.valid {
                    violations.push(format!(
                        "{event_id}: built to be refused, but acknowledged ({call}, start {generation})"
                    ));
                }
                if !present {
                    violations.push(format!(
                        "{event_id}: acknowledged ({call}, start {generation}) but not stored"
                    ));
                }
            }
            Outcome::Failed(reason) => {
                figures.refused += 1;
                if entry.valid {
                    violations.push(format!(
                        "{event_id}: a valid event refused ({call}, start {generation}): {reason}"
                    ));
                }
                if present {
                    violations.push(format!(
                        "{event_id}: refused ({call}, start {generation}: {reason}) but stored"
                    ));
                }
            }
            Outcome::Indeterminate(reason) => {
                figures.indeterminate += 1;
                figures.stored_indeterminate += usize::from(present);
                // "Unavailable: tcp connect error ..." counts as "Unavailable: tcp connect error".
                let kind: String = reason.chars().take(40).collect();
                *figures.indeterminate_kinds.entry(kind).or_default() += 1;
            }
            Outcome::Invoked => {
                figures.indeterminate += 1;
                figures.stored_indeterminate += usize::from(present);
            }
        }
    }
    for event_id in stored {
        if !entries.contains_key(event_id) {
            violations.push(format!("{event_id}: stored but never sent"));
        }
    }
}

/// Checks the rows of the log after the replays and the last kill.
fn check_final(
    entries: &BTreeMap<String, Entry>,
    resolved: &HashMap<String, Outcome>,
    rows: &[String],
    violations: &mut Vec<String>,
) {
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for event_id in rows {
        *copies.entry(event_id).or_default() += 1;
    }
    for (event_id, count) in &copies {
        if *count > 1 {
            violations.push(format!("{event_id}: stored {count} times"));
        }
    }
    let mut expected = 0;
    for (event_id, entry) in entries {
        let outcome = resolved.get(event_id).unwrap_or(&entry.outcome);
        let present = copies.contains_key(event_id.as_str());
        match outcome {
            Outcome::Ok(_) => {
                expected += 1;
                if !present {
                    violations.push(format!(
                        "{event_id}: acknowledged but missing after the last kill"
                    ));
                }
            }
            Outcome::Failed(_) if present => violations.push(format!(
                "{event_id}: refused but stored after the last kill"
            )),
            Outcome::Failed(_) => {}
            Outcome::Indeterminate(_) | Outcome::Invoked if present => expected += 1,
            Outcome::Indeterminate(_) | Outcome::Invoked => {}
        }
    }
    for event_id in copies.keys() {
        if !entries.contains_key(*event_id) {
            violations.push(format!("{event_id}: stored but never sent"));
        }
    }
    if rows.len() != expected {
        violations.push(format!(
            "{} rows in progress_events, expected {expected} (acknowledged, first time or on replay)",
            rows.len()
        ));
    }
}

/// Replays `entries` unchanged (same event ids) in batches until each gets a definite answer or
/// [`REPLAY_ATTEMPTS`] run out; returns the last outcome of each.
async fn replay(
    client: &mut ProgressServiceClient<Channel>,
    token: &str,
    journal: &Journal,
    entries: &[&Entry],
) -> HashMap<String, Outcome> {
    let mut outcomes = HashMap::new();
    for chunk in entries.chunks(REPLAY_CHUNK) {
        let mut pending: Vec<(pb::ProgressEvent, bool)> = chunk
            .iter()
            .map(|entry| (entry.event.clone(), entry.valid))
            .collect();
        for _ in 0..REPLAY_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let request = pb::BatchRecordProgressRequest {
                events: pending.iter().map(|(event, _)| event.clone()).collect(),
            };
            let answer = client
                .batch_record_progress(authorized(request, token, CALL_TIMEOUT))
                .await;
            let mut again = Vec::new();
            for ((event, valid), (event_id, outcome)) in pending
                .iter()
                .zip(batch_outcomes(journal, &pending, answer))
            {
                if matches!(outcome, Outcome::Indeterminate(_)) {
                    again.push((event.clone(), *valid));
                }
                outcomes.insert(event_id, outcome);
            }
            pending = again;
        }
    }
    outcomes
}
