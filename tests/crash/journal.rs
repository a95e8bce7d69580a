//! The clients' journal (a Jepsen-style set workload): every event is written down as INVOKED
//! before its call goes out, and as OK, FAILED or INDETERMINATE when the call returns.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use lms::pb;
use tokio::sync::watch;
use tonic::{Code, Status};

/// What is known of one event.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Sent; no answer yet.
    Invoked,
    /// Acknowledged: the server promised it is committed.
    Ok(pb::ProgressAck),
    /// Refused with an error that means nothing was written.
    Failed(String),
    /// No answer that says either way (transport error, UNAVAILABLE, deadline, reset, ...).
    Indeterminate(String),
}

/// One journalled event.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The event as sent (a replay sends it again unchanged).
    pub(crate) event: pb::ProgressEvent,
    /// Built to be accepted (false: built to be refused, e.g. a score on a lecture).
    pub(crate) valid: bool,
    /// Sent alone with `RecordProgress` (else in a `BatchRecordProgress`).
    pub(crate) unary: bool,
    /// Server generation (0 = first start) the call went to.
    pub(crate) generation: usize,
    /// What is known.
    pub(crate) outcome: Outcome,
}

/// The journal shared by every client.
#[derive(Debug)]
pub(crate) struct Journal {
    entries: Mutex<BTreeMap<String, Entry>>,
    violations: Mutex<Vec<String>>,
    acked: watch::Sender<Vec<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking client fails the test anyway; the journal stays readable for the report.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    /// Returns an empty journal.
    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::default(),
            violations: Mutex::default(),
            acked: watch::Sender::new(Vec::new()),
        }
    }

    /// Writes `events` down as INVOKED, before their call is sent.
    pub(crate) fn invoke(
        &self,
        events: &[(pb::ProgressEvent, bool)],
        unary: bool,
        generation: usize,
    ) {
        let mut entries = lock(&self.entries);
        for (event, valid) in events {
            let previous = entries.insert(
                event.event_id.clone(),
                Entry {
                    event: event.clone(),
                    valid: *valid,
                    unary,
                    generation,
                    outcome: Outcome::Invoked,
                },
            );
            assert!(previous.is_none(), "event id {} made twice", event.event_id);
        }
    }

    /// Writes down what the call answered for `event_id`.
    pub(crate) fn settle(&self, event_id: &str, outcome: Outcome) {
        let mut entries = lock(&self.entries);
        let entry = entries
            .get_mut(event_id)
            .expect("settled event was invoked");
        if matches!(outcome, Outcome::Ok(_)) {
            let generation = entry.generation;
            self.acked.send_modify(|acked| {
                if acked.len() <= generation {
                    acked.resize(generation + 1, 0);
                }
                acked[generation] += 1;
            });
        }
        entry.outcome = outcome;
    }

    /// Notes a broken promise seen by a client (e.g. a batch answered with the wrong number of acks).
    pub(crate) fn violation(&self, message: String) {
        lock(&self.violations).push(message);
    }

    /// Returns the violations noted so far.
    pub(crate) fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// Returns a copy of every entry, by event id.
    pub(crate) fn entries(&self) -> BTreeMap<String, Entry> {
        lock(&self.entries).clone()
    }

    /// Watches the number of acknowledged events per server generation.
    pub(crate) fn acked(&self) -> watch::Receiver<Vec<u64>> {
        self.acked.subscribe()
    }
}

/// Returns the outcome a failed call means for the events it carried.
///
/// Only refusals the server makes before writing anything count as FAILED; anything else
/// (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN transport errors, INTERNAL, ABORTED,
/// RESOURCE_EXHAUSTED, ...) may or may not have been committed.
pub(crate) fn outcome_of(status: &Status) -> Outcome {
    let described = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange => Outcome::Failed(described),
        _ => Outcome::Indeterminate(described),
    }
}
