//! The load: closed-loop clients recording progress events (unary and batched, a few built to be
//! refused), each journalled before and after its call; and the replays of the end.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use lms::pb::{
    self, ProgressSource as Source, ProgressVerb as Verb,
    progress_service_client::ProgressServiceClient,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::fixtures::{Fixture, PASS_SCORE, authorized};
use crate::journal::{Journal, Outcome, outcome_of};

/// Deadline of one call.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Share of calls that are unary `RecordProgress` (the rest are `BatchRecordProgress`).
const UNARY_SHARE: f64 = 0.6;
/// Largest batch a client sends.
const MAX_BATCH: usize = 16;
/// Share of events built to be refused.
const INVALID_SHARE: f64 = 0.05;

/// The server clients should call: its generation (0 = first start) and address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Starts before this one.
    pub(crate) generation: usize,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

/// A `ProgressService` client on a channel of its own (connected on first use).
pub(crate) fn progress_client(addr: SocketAddr) -> ProgressServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(1))
        .timeout(CALL_TIMEOUT)
        .connect_lazy();
    ProgressServiceClient::new(channel)
}

/// One load client.
pub(crate) struct Client {
    /// Its RNG seed (derived from the run's seed).
    pub(crate) seed: u64,
    /// What to record against.
    pub(crate) fixture: Arc<Fixture>,
    /// Admin bearer token.
    pub(crate) token: Arc<str>,
    /// The server to call; `None` while it is down.
    pub(crate) targets: watch::Receiver<Option<Target>>,
    /// Where outcomes go.
    pub(crate) journal: Arc<Journal>,
    /// Set when the load ends.
    pub(crate) stop: Arc<AtomicBool>,
}

impl Client {
    /// Calls until told to stop; returns the number of calls made.
    pub(crate) async fn run(mut self) -> u64 {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut connection: Option<(usize, ProgressServiceClient<Channel>)> = None;
        let mut calls = 0;
        while !self.stop.load(Ordering::Relaxed) {
            // While the server is down, wait for the next one; a new server gets a new channel.
            let target = match self.targets.wait_for(Option::is_some).await {
                Ok(target) => (*target).expect("waited for a target"),
                Err(_) => break,
            };
            if connection
                .as_ref()
                .is_none_or(|(generation, _)| *generation != target.generation)
            {
                connection = Some((target.generation, progress_client(target.addr)));
            }
            let client = &mut connection.as_mut().expect("connected").1;
            calls += 1;
            if rng.random_bool(UNARY_SHARE) {
                let event = make_event(&mut rng, &self.fixture);
                self.unary(client, target.generation, event).await;
            } else {
                let count = rng.random_range(2..=MAX_BATCH);
                let events = (0..count)
                    .map(|_| make_event(&mut rng, &self.fixture))
                    .collect();
                self.batch(client, target.generation, events).await;
            }
        }
        calls
    }

    async fn unary(
        &self,
        client: &mut ProgressServiceClient<Channel>,
        generation: usize,
        event: (pb::ProgressEvent, bool),
    ) {
        let event_id = event.0.event_id.clone();
        self.journal
            .invoke(std::slice::from_ref(&event), true, generation);
        let request = pb::RecordProgressRequest {
            event: Some(event.0),
        };
        let outcome = match client
            .record_progress(authorized(request, &self.token, CALL_TIMEOUT))
            .await
        {
            Ok(response) => {
                let ack = response.into_inner();
                if ack.event_id != event_id || ack.error.is_some() {
                    self.journal.violation(format!(
                        "RecordProgress of {event_id} answered OK with a foreign or failed ack: {ack:?}"
                    ));
                    Outcome::Indeterminate("malformed ack".to_owned())
                } else {
                    Outcome::Ok(ack)
                }
            }
            Err(status) => outcome_of(&status),
        };
        self.journal.settle(&event_id, outcome);
    }

    async fn batch(
        &self,
        client: &mut ProgressServiceClient<Channel>,
        generation: usize,
        events: Vec<(pb::ProgressEvent, bool)>,
    ) {
        self.journal.invoke(&events, false, generation);
        let request = pb::BatchRecordProgressRequest {
            events: events.iter().map(|(event, _)| event.clone()).collect(),
        };
        let answer = client
            .batch_record_progress(authorized(request, &self.token, CALL_TIMEOUT))
            .await;
        for (event_id, outcome) in batch_outcomes(&self.journal, &events, answer) {
            self.journal.settle(&event_id, outcome);
        }
    }
}

/// Returns the outcome of every event of a `BatchRecordProgress` call.
pub(crate) fn batch_outcomes(
    journal: &Journal,
    events: &[(pb::ProgressEvent, bool)],
    answer: Result<tonic::Response<pb::BatchRecordProgressResponse>, tonic::Status>,
) -> Vec<(String, Outcome)> {
    let ids = events.iter().map(|(event, _)| event.event_id.clone());
    match answer {
        Ok(response) => {
            let acks = response.into_inner().acks;
            let in_order = acks.len() == events.len()
                && acks
                    .iter()
                    .zip(events)
                    .all(|(ack, (event, _))| ack.event_id == event.event_id);
            if !in_order {
                journal.violation(format!(
                    "a batch of {} events was answered with {} acks, not one per event in order",
                    events.len(),
                    acks.len()
                ));
                let unknown = || Outcome::Indeterminate("malformed batch answer".to_owned());
                return ids.map(|id| (id, unknown())).collect();
            }
            ids.zip(acks)
                .map(|(id, ack)| match &ack.error {
                    None => (id, Outcome::Ok(ack)),
                    Some(error) => (
                        id,
                        Outcome::Failed(format!("{}: {}", error.reason, error.message)),
                    ),
                })
                .collect()
        }
        Err(status) => ids.map(|id| (id, outcome_of(&status))).collect(),
    }
}

/// Returns a fresh event with an id drawn from `rng`, and whether it is built to be accepted.
fn make_event(rng: &mut StdRng, fixture: &Fixture) -> (pb::ProgressEvent, bool) {
    let event_id = uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string();
    let enrollment_id = fixture.enrollments[rng.random_range(0..fixture.enrollments.len())].clone();
    let now = SystemTime::now();
    let occurred = now - Duration::from_secs(rng.random_range(0..86_400));
    let (activity, verb, score, occurred, valid) = if rng.random_bool(INVALID_SHARE) {
        match rng.random_range(0..3) {
            // Only assessments take a score.
            0 => (&fixture.lecture, Verb::Completed, Some(80), occurred, false),
            // PASSED below the pass mark.
            1 => {
                let score = rng.random_range(0..PASS_SCORE);
                (&fixture.exam, Verb::Passed, Some(score), occurred, false)
            }
            // A day in the future.
            _ => {
                let future = now + Duration::from_secs(86_400);
                (&fixture.lab, Verb::Progressed, None, future, false)
            }
        }
    } else {
        match rng.random_range(0..6) {
            0 => (&fixture.lecture, Verb::Attended, None, occurred, true),
            1 => (&fixture.lecture, Verb::Progressed, None, occurred, true),
            2 => (&fixture.lab, Verb::Started, None, occurred, true),
            3 => (&fixture.lab, Verb::Completed, None, occurred, true),
            4 => {
                let score = rng.random_range(PASS_SCORE..=100);
                (&fixture.exam, Verb::Passed, Some(score), occurred, true)
            }
            _ => {
                let score = rng.random_range(0..PASS_SCORE);
                (&fixture.exam, Verb::Failed, Some(score), occurred, true)
            }
        }
    };
    let source = if rng.random_bool(0.5) {
        Source::App
    } else {
        Source::Trainer
    };
    let event = pb::ProgressEvent {
        event_id,
        enrollment_id,
        activity_id: activity.clone(),
        verb: verb.into(),
        score,
        duration_seconds: rng.random_range(0..=3600),
        occurred_time: Some(prost_types::Timestamp::from(occurred)),
        source: source.into(),
        evidence: None,
        provenance_note: String::new(),
    };
    (event, valid)
}
