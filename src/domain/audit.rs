//! The tamper-evident audit log: change digests, the hash chain, and its verification.

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

/// Who made a change, through which call; written into every audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    /// Token subject (person id or service name).
    pub actor: String,
    /// Full RPC name, e.g. `lms.v1.OrganizationService/CreateOrganization`.
    pub action: String,
    /// Client `request_id`, if any.
    pub request_id: Option<String>,
}

/// One change to record, before it takes its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditChange {
    /// Kind of resource, e.g. `organization`.
    pub resource_type: &'static str,
    /// Id of the resource.
    pub resource_id: String,
    /// SHA-256 (hex) of the change.
    pub change_digest: String,
}

impl AuditChange {
    /// Describes a change of `resource_type` `resource_id` whose new state is `change`.
    pub fn new(resource_type: &'static str, resource_id: &str, change: &serde_json::Value) -> Self {
        Self {
            resource_type,
            resource_id: resource_id.to_owned(),
            change_digest: hex::encode(Sha256::digest(change.to_string().as_bytes())),
        }
    }
}

/// An entry of the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position, from 1.
    pub sequence: i64,
    /// UUIDv7.
    pub id: String,
    /// Who.
    pub actor: String,
    /// Which RPC.
    pub action: String,
    /// Kind of resource.
    pub resource_type: String,
    /// Id of the resource.
    pub resource_id: String,
    /// Client request id, empty if none.
    pub request_id: String,
    /// When (microsecond precision).
    pub time: DateTime<Utc>,
    /// Digest of the change.
    pub change_digest: String,
    /// Hash of the previous entry; empty for the first.
    pub previous_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

impl AuditEntry {
    /// Builds the entry at `sequence` after an entry hashed `previous_hash`.
    pub fn chain(
        sequence: i64,
        previous_hash: &str,
        context: &AuditContext,
        change: AuditChange,
        time: DateTime<Utc>,
    ) -> Self {
        let mut entry = Self {
            sequence,
            id: crate::domain::new_id(),
            actor: context.actor.clone(),
            action: context.action.clone(),
            resource_type: change.resource_type.to_owned(),
            resource_id: change.resource_id,
            request_id: context.request_id.clone().unwrap_or_default(),
            time,
            change_digest: change.change_digest,
            previous_hash: previous_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// Returns the hash this entry should carry, from its own fields and `previous_hash`.
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        // Length-prefixed fields: no two different entries hash the same input.
        for field in [
            self.sequence.to_string().as_str(),
            &self.id,
            &self.actor,
            &self.action,
            &self.resource_type,
            &self.resource_id,
            &self.request_id,
            self.time.timestamp_micros().to_string().as_str(),
            &self.change_digest,
            &self.previous_hash,
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// Walks the chain entry by entry and remembers the first broken link.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    expected_sequence: i64,
    previous_hash: String,
    checked: i64,
    broken: Option<(i64, String)>,
}

impl ChainVerifier {
    /// Starts at the beginning of the chain.
    pub fn new() -> Self {
        Self {
            expected_sequence: 1,
            ..Self::default()
        }
    }

    /// Checks the next entry; returns false once a broken link has been found.
    pub fn check(&mut self, entry: &AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.checked += 1;
        let problem = if entry.sequence != self.expected_sequence {
            Some(format!(
                "entry {} is missing: the chain jumps to {}",
                self.expected_sequence, entry.sequence
            ))
        } else if entry.previous_hash != self.previous_hash {
            Some("previous_hash does not match the hash of the entry before".to_owned())
        } else if entry.compute_hash() != entry.hash {
            Some("the entry's fields do not match its hash: it was edited".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.broken = Some((self.expected_sequence.min(entry.sequence), problem));
            return false;
        }
        self.expected_sequence += 1;
        self.previous_hash.clone_from(&entry.hash);
        true
    }

    /// Checks that the chain ends where the recorded head says it does, and that nothing lies
    /// beyond it (`beyond_head`: the first stored sequence after the head, if any).
    pub fn finish(
        mut self,
        head_sequence: i64,
        head_hash: &str,
        beyond_head: Option<i64>,
    ) -> ChainReport {
        if self.broken.is_none() {
            let last = self.expected_sequence - 1;
            if last != head_sequence {
                self.broken = Some((
                    last + 1,
                    format!(
                        "the chain ends at {last} but its head says {head_sequence}: entries were removed"
                    ),
                ));
            } else if self.previous_hash != head_hash {
                self.broken = Some((
                    last,
                    "the last entry does not match the chain head".to_owned(),
                ));
            } else if let Some(stray) = beyond_head {
                self.broken = Some((
                    stray,
                    format!(
                        "entry {stray} lies beyond the chain head {head_sequence}: it was inserted outside the service"
                    ),
                ));
            }
        }
        ChainReport {
            checked: self.checked,
            broken: self.broken,
        }
    }
}

/// Result of a chain verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries checked.
    pub checked: i64,
    /// First broken sequence and why, if any.
    pub broken: Option<(i64, String)>,
}

/// Resource type of the audit entries that anchor progress events (one per transaction).
pub const PROGRESS_BATCH: &str = "progress_batch";

/// Hex characters of an event's digest kept in an anchor's manifest, to name the event whose
/// fields no longer match. Detection does not rest on them: the anchor's full digest does.
const MANIFEST_PREFIX: usize = 16;

/// SHA-256 over a sequence of fields, each encoded without ambiguity: `0x00` for a NULL, or
/// `0x01`, the length in bytes as a big-endian u64, and the UTF-8 bytes. The first field is a
/// tag naming the encoding and its version.
struct Canonical(Sha256);

impl Canonical {
    fn new(tag: &str) -> Self {
        let mut canonical = Self(Sha256::new());
        canonical.text(tag);
        canonical
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.0.update([0u8]),
            Some(value) => {
                self.0.update([1u8]);
                self.0.update((value.len() as u64).to_be_bytes());
                self.0.update(value.as_bytes());
            }
        }
    }

    fn text(&mut self, value: &str) {
        self.optional(Some(value));
    }

    fn number(&mut self, value: i64) {
        self.text(&value.to_string());
    }

    fn time(&mut self, value: DateTime<Utc>) {
        self.number(value.timestamp_micros());
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Every stored field of one progress event (a row of `progress_events`), as anchors cover it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProgressEvent {
    /// Client-made id (primary key).
    pub event_id: String,
    /// Enrolment.
    pub enrollment_id: String,
    /// Activity.
    pub activity_id: String,
    /// Verb (stored name).
    pub verb: String,
    /// Score, if any.
    pub score: Option<i32>,
    /// Time spent.
    pub duration_seconds: i64,
    /// When it happened (microseconds are kept).
    pub occurred_time: DateTime<Utc>,
    /// Source (stored name).
    pub source: String,
    /// Evidence URI.
    pub evidence_uri: Option<String>,
    /// Evidence note.
    pub evidence_note: Option<String>,
    /// Provenance of an import.
    pub provenance_note: Option<String>,
    /// Who recorded it (token subject).
    pub actor: String,
    /// Digest of what the client sent.
    pub payload_hash: String,
    /// When it was committed; every event of one transaction shares it.
    pub recorded_time: DateTime<Utc>,
    /// Activity state acknowledged.
    pub ack_activity_state: String,
    /// Percent complete acknowledged.
    pub ack_percent_complete: f64,
    /// Enrolment state acknowledged.
    pub ack_enrollment_state: String,
}

impl StoredProgressEvent {
    /// Returns the SHA-256 of the event's canonical encoding (`lms.progress_event.v1`, see
    /// docs/audit.md): its seventeen columns in table order, times as microseconds since the
    /// Unix epoch in decimal, integers in decimal, the percentage as the 16 hex digits of its
    /// IEEE-754 bits (`-0.0` as `0.0`), NULLs marked as such.
    pub fn digest(&self) -> [u8; 32] {
        let mut canonical = Canonical::new("lms.progress_event.v1");
        canonical.text(&self.event_id);
        canonical.text(&self.enrollment_id);
        canonical.text(&self.activity_id);
        canonical.text(&self.verb);
        canonical.optional(self.score.map(|score| score.to_string()).as_deref());
        canonical.number(self.duration_seconds);
        canonical.time(self.occurred_time);
        canonical.text(&self.source);
        canonical.optional(self.evidence_uri.as_deref());
        canonical.optional(self.evidence_note.as_deref());
        canonical.optional(self.provenance_note.as_deref());
        canonical.text(&self.actor);
        canonical.text(&self.payload_hash);
        canonical.time(self.recorded_time);
        canonical.text(&self.ack_activity_state);
        // Adding 0.0 turns -0.0 into 0.0, which a database may store in its place.
        let percent = self.ack_percent_complete + 0.0;
        canonical.text(&format!("{:016x}", percent.to_bits()));
        canonical.text(&self.ack_enrollment_state);
        canonical.finish()
    }
}

/// Returns the digest of a batch: `lms.progress_batch.v1`, the count, then each event's digest
/// in hex, in the order given (the anchor's, by event id).
fn batch_digest<'a>(count: usize, digests: impl Iterator<Item = &'a [u8; 32]>) -> String {
    let mut canonical = Canonical::new("lms.progress_batch.v1");
    canonical.number(count as i64);
    for digest in digests {
        canonical.text(&hex::encode(digest));
    }
    hex::encode(canonical.finish())
}

/// What an audit entry of type [`PROGRESS_BATCH`] commits to: the progress events one
/// transaction wrote (or, for the anchors of the migration, events written before anchoring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressAnchor {
    /// Sequence of its audit entry.
    pub sequence: i64,
    /// UUIDv7; the `resource_id` of its audit entry.
    pub id: String,
    /// Earliest `recorded_time` of its events.
    pub first_recorded_time: DateTime<Utc>,
    /// Latest `recorded_time` of its events (the same as the first for a transaction's anchor).
    pub last_recorded_time: DateTime<Utc>,
    /// Number of events.
    pub event_count: i64,
    /// [`batch_digest`] of the events, in event id order.
    pub events_digest: String,
    /// JSON array of `[event_id, first 16 hex digits of the event's digest]`, by event id.
    pub manifest: String,
}

impl ProgressAnchor {
    /// Returns the anchor of `events` (its sequence is set when its entry is appended), or
    /// `None` when there is none.
    pub fn over(events: &[StoredProgressEvent]) -> Option<Self> {
        let mut digested: Vec<(&str, [u8; 32], DateTime<Utc>)> = events
            .iter()
            .map(|event| (event.event_id.as_str(), event.digest(), event.recorded_time))
            .collect();
        digested.sort_unstable_by(|left, right| left.0.cmp(right.0));
        let first_recorded_time = digested.iter().map(|(_, _, time)| *time).min()?;
        let last_recorded_time = digested.iter().map(|(_, _, time)| *time).max()?;
        let manifest: Vec<(&str, String)> = digested
            .iter()
            .map(|(id, digest, _)| (*id, hex::encode(&digest[..MANIFEST_PREFIX / 2])))
            .collect();
        Some(Self {
            sequence: 0,
            id: crate::domain::new_id(),
            first_recorded_time,
            last_recorded_time,
            event_count: digested.len() as i64,
            events_digest: batch_digest(digested.len(), digested.iter().map(|(_, d, _)| d)),
            manifest: serde_json::to_string(&manifest).unwrap_or_default(),
        })
    }

    /// Returns the digest its audit entry carries (`lms.progress_anchor.v1` over the id, the
    /// first and last recorded times, the count, the events digest and the manifest).
    pub fn change_digest(&self) -> String {
        let mut canonical = Canonical::new("lms.progress_anchor.v1");
        canonical.text(&self.id);
        canonical.time(self.first_recorded_time);
        canonical.time(self.last_recorded_time);
        canonical.number(self.event_count);
        canonical.text(&self.events_digest);
        canonical.text(&self.manifest);
        hex::encode(canonical.finish())
    }

    /// Returns the change its audit entry records.
    pub fn change(&self) -> AuditChange {
        AuditChange {
            resource_type: PROGRESS_BATCH,
            resource_id: self.id.clone(),
            change_digest: self.change_digest(),
        }
    }

    /// Returns the manifest's pairs, or why it cannot be read.
    fn manifest_entries(&self) -> std::result::Result<Vec<(String, String)>, String> {
        let entries: Vec<(String, String)> = serde_json::from_str(&self.manifest)
            .map_err(|error| format!("its manifest is not readable: {error}"))?;
        if entries.len() as i64 != self.event_count {
            return Err(format!(
                "its manifest lists {} events but its count is {}",
                entries.len(),
                self.event_count
            ));
        }
        if entries.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err("its manifest is not in strict event id order".to_owned());
        }
        Ok(entries)
    }
}

/// What is wrong with the progress log, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressProblemKind {
    /// A stored field of an event no longer matches what its anchor committed to.
    EventEdited,
    /// An event an anchor lists is gone.
    EventDeleted,
    /// An event no anchor lists: inserted outside the service (or moved out of its anchor's
    /// time range by an edit of `recorded_time`).
    EventUnanchored,
    /// An anchor row does not match its audit entry, or has none.
    AnchorTampered,
    /// An audit entry of type [`PROGRESS_BATCH`] has no anchor row.
    AnchorMissing,
}

/// The first problem found in the progress log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressProblem {
    /// What kind.
    pub kind: ProgressProblemKind,
    /// The event concerned; empty when the problem is an anchor's.
    pub event_id: String,
    /// The sequence of the anchor concerned; 0 when no anchor lists the event.
    pub anchor_sequence: i64,
    /// Why, in words.
    pub message: String,
}

/// Result of checking the progress log against its anchors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressReport {
    /// Events checked (up to the first problem).
    pub events_checked: i64,
    /// Anchors checked completely.
    pub anchors_checked: i64,
    /// The first problem, if any.
    pub problem: Option<ProgressProblem>,
}

/// An anchor being checked: the events it lists and the digests of those seen so far.
#[derive(Debug)]
struct OpenAnchor {
    anchor: ProgressAnchor,
    expected: Vec<(String, String)>,
    seen: std::collections::HashMap<String, [u8; 32]>,
}

/// Checks the progress log against its anchors in one pass over both, in `recorded_time` order.
///
/// The caller opens each anchor ([`Self::open`]) before the first event recorded at or after the
/// anchor's first recorded time, and hands over events in `recorded_time` order
/// ([`Self::check_event`]); an anchor is closed (every event it lists must have been seen) once
/// an event later than its last recorded time arrives, or at [`Self::finish`]. Memory holds the
/// open anchors only: one transaction's, or a few around a time shared by concurrent ones.
#[derive(Debug, Default)]
pub struct ProgressVerifier {
    open: std::collections::BTreeMap<(DateTime<Utc>, i64), OpenAnchor>,
    claims: std::collections::HashMap<String, (DateTime<Utc>, i64)>,
    report: ProgressReport,
}

impl ProgressVerifier {
    /// Starts with nothing checked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns true once a problem has been found.
    pub fn failed(&self) -> bool {
        self.report.problem.is_some()
    }

    fn fail(&mut self, kind: ProgressProblemKind, event_id: &str, sequence: i64, message: String) {
        if self.report.problem.is_none() {
            self.report.problem = Some(ProgressProblem {
                kind,
                event_id: event_id.to_owned(),
                anchor_sequence: sequence,
                message,
            });
        }
    }

    /// Opens `anchor`, given the audit entry at its sequence (`entry`: resource type, resource
    /// id and change digest; `None` when the chain has no entry there). Returns false on a problem.
    pub fn open(&mut self, anchor: ProgressAnchor, entry: Option<(&str, &str, &str)>) -> bool {
        if self.failed() {
            return false;
        }
        let sequence = anchor.sequence;
        let tampered = match entry {
            None => Some(format!(
                "the progress anchor at sequence {sequence} has no audit entry in the chain: it was inserted outside the service"
            )),
            Some((resource_type, _, _)) if resource_type != PROGRESS_BATCH => Some(format!(
                "the progress anchor at sequence {sequence} belongs to an audit entry of type {resource_type}: it was inserted outside the service"
            )),
            Some((_, resource_id, digest))
                if resource_id != anchor.id || digest != anchor.change_digest() =>
            {
                Some(format!(
                    "the progress anchor at sequence {sequence} does not match its audit entry: the anchor row was edited"
                ))
            }
            Some(_) => None,
        };
        if let Some(message) = tampered {
            self.fail(ProgressProblemKind::AnchorTampered, "", sequence, message);
            return false;
        }
        let expected = match anchor.manifest_entries() {
            Ok(expected) => expected,
            Err(why) => {
                self.fail(
                    ProgressProblemKind::AnchorTampered,
                    "",
                    sequence,
                    format!("the progress anchor at sequence {sequence} is malformed: {why}"),
                );
                return false;
            }
        };
        let key = (anchor.last_recorded_time, sequence);
        for (event_id, _) in &expected {
            self.claims.insert(event_id.clone(), key);
        }
        self.open.insert(
            key,
            OpenAnchor {
                anchor,
                expected,
                seen: std::collections::HashMap::new(),
            },
        );
        true
    }

    /// Checks the next event (in `recorded_time` order). Returns false on a problem.
    pub fn check_event(&mut self, event: &StoredProgressEvent) -> bool {
        if self.failed() || !self.close_until(Some(event.recorded_time)) {
            return false;
        }
        let Some(key) = self.claims.remove(&event.event_id) else {
            self.fail(
                ProgressProblemKind::EventUnanchored,
                &event.event_id,
                0,
                format!(
                    "progress event {} (recorded {}) is covered by no anchor: it was inserted outside the service, or its recorded_time was edited",
                    event.event_id,
                    event.recorded_time.to_rfc3339()
                ),
            );
            return false;
        };
        let Some(open) = self.open.get_mut(&key) else {
            self.fail(
                ProgressProblemKind::EventUnanchored,
                &event.event_id,
                key.1,
                format!("progress event {} lost its anchor", event.event_id),
            );
            return false;
        };
        let digest = event.digest();
        let prefix = hex::encode(&digest[..MANIFEST_PREFIX / 2]);
        let listed = open
            .expected
            .binary_search_by(|(id, _)| id.as_str().cmp(&event.event_id))
            .ok()
            .map(|index| open.expected[index].1.clone());
        open.seen.insert(event.event_id.clone(), digest);
        if listed.as_deref() != Some(prefix.as_str()) {
            let sequence = open.anchor.sequence;
            self.fail(
                ProgressProblemKind::EventEdited,
                &event.event_id,
                sequence,
                format!(
                    "progress event {} was edited: its stored fields no longer match the digest anchored at sequence {sequence}",
                    event.event_id
                ),
            );
            return false;
        }
        self.report.events_checked += 1;
        true
    }

    /// Closes the open anchors whose last recorded time is before `time` (all of them for
    /// `None`), in that order. Returns false on a problem.
    fn close_until(&mut self, time: Option<DateTime<Utc>>) -> bool {
        while let Some(entry) = self.open.first_entry() {
            if time.is_some_and(|time| entry.key().0 >= time) {
                break;
            }
            let open = entry.remove();
            for (event_id, _) in &open.expected {
                self.claims.remove(event_id);
            }
            let sequence = open.anchor.sequence;
            if let Some((missing, _)) = open
                .expected
                .iter()
                .find(|(event_id, _)| !open.seen.contains_key(event_id))
            {
                self.fail(
                    ProgressProblemKind::EventDeleted,
                    missing,
                    sequence,
                    format!(
                        "progress event {missing}, anchored at sequence {sequence}, is missing: it was deleted"
                    ),
                );
                return false;
            }
            let digest = batch_digest(
                open.expected.len(),
                open.expected.iter().filter_map(|(id, _)| open.seen.get(id)),
            );
            if digest != open.anchor.events_digest {
                self.fail(
                    ProgressProblemKind::EventEdited,
                    "",
                    sequence,
                    format!(
                        "the events anchored at sequence {sequence} match its manifest but not its digest: one was edited"
                    ),
                );
                return false;
            }
            self.report.anchors_checked += 1;
        }
        true
    }

    /// Closes every anchor still open and returns the report.
    pub fn finish(mut self) -> ProgressReport {
        if !self.failed() {
            self.close_until(None);
        }
        self.report
    }

    /// Records that the audit entry at `sequence`, of type [`PROGRESS_BATCH`], has no anchor row.
    pub fn anchor_missing(&mut self, sequence: i64) {
        self.fail(
            ProgressProblemKind::AnchorMissing,
            "",
            sequence,
            format!(
                "the audit entry at sequence {sequence} anchors progress events but its anchor row is gone: it was deleted"
            ),
        );
    }
}

/// Result of verifying the audit log: the hash chain, then the progress log against its anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The hash chain.
    pub chain: ChainReport,
    /// The progress events against their anchors.
    pub progress: ProgressReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(length: i64) -> Vec<AuditEntry> {
        let context = AuditContext {
            actor: "admin".to_owned(),
            action: "lms.v1.OrganizationService/CreateOrganization".to_owned(),
            request_id: None,
        };
        let mut entries: Vec<AuditEntry> = Vec::new();
        for sequence in 1..=length {
            let previous = entries
                .last()
                .map(|entry| entry.hash.clone())
                .unwrap_or_default();
            let change = AuditChange::new(
                "organization",
                &sequence.to_string(),
                &serde_json::json!({"n": sequence}),
            );
            entries.push(AuditEntry::chain(
                sequence,
                &previous,
                &context,
                change,
                crate::domain::now(),
            ));
        }
        entries
    }

    fn verify(entries: &[AuditEntry], head: (i64, &str)) -> ChainReport {
        let mut verifier = ChainVerifier::new();
        for entry in entries {
            verifier.check(entry);
        }
        verifier.finish(head.0, head.1, None)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let entries = chain(5);
        let report = verify(&entries, (5, &entries[4].hash));
        assert_eq!(
            report,
            ChainReport {
                checked: 5,
                broken: None
            }
        );
    }

    #[test]
    fn an_edited_entry_is_found() {
        let mut entries = chain(5);
        entries[2].actor = "mallory".to_owned();
        let head = entries[4].hash.clone();
        assert_eq!(verify(&entries, (5, &head)).broken.unwrap().0, 3);
    }

    #[test]
    fn a_deleted_entry_is_found() {
        let mut entries = chain(5);
        entries.remove(1);
        let head = entries[3].hash.clone();
        assert_eq!(verify(&entries, (5, &head)).broken.unwrap().0, 2);
    }

    #[test]
    fn a_truncated_tail_is_found() {
        let entries = chain(5);
        let head = entries[4].hash.clone();
        assert_eq!(verify(&entries[..4], (5, &head)).broken.unwrap().0, 5);
    }

    mod progress {
        use chrono::{DateTime, TimeDelta, Utc};
        use proptest::prelude::*;

        use super::super::*;

        fn at(micros: i64) -> DateTime<Utc> {
            DateTime::from_timestamp_micros(1_800_000_000_000_000 + micros).unwrap()
        }

        fn event(number: u32, recorded: i64) -> StoredProgressEvent {
            StoredProgressEvent {
                event_id: format!("00000000-0000-4000-8000-{number:012}"),
                enrollment_id: "e".to_owned(),
                activity_id: "a".to_owned(),
                verb: "COMPLETED".to_owned(),
                score: Some(80),
                duration_seconds: 60,
                occurred_time: at(recorded - 5_000_000),
                source: "APP".to_owned(),
                evidence_uri: None,
                evidence_note: Some("note".to_owned()),
                provenance_note: None,
                actor: "learner-1".to_owned(),
                payload_hash: "ab".repeat(32),
                recorded_time: at(recorded),
                ack_activity_state: "COMPLETED".to_owned(),
                ack_percent_complete: 50.0,
                ack_enrollment_state: "IN_PROGRESS".to_owned(),
            }
        }

        /// Anchors each group of events (one transaction each) at sequences 1, 2, ...
        fn anchors(groups: &[Vec<StoredProgressEvent>]) -> Vec<ProgressAnchor> {
            groups
                .iter()
                .enumerate()
                .map(|(index, events)| {
                    let mut anchor = ProgressAnchor::over(events).unwrap();
                    anchor.sequence = index as i64 + 1;
                    anchor
                })
                .collect()
        }

        /// Runs the verifier as the store does: anchors opened by first recorded time, events
        /// in recorded-time order; `entries` are the chain's digests (by default the anchors').
        fn verify_with(
            anchors: &[ProgressAnchor],
            entries: &[String],
            events: &[StoredProgressEvent],
        ) -> ProgressReport {
            let mut pending: Vec<(ProgressAnchor, String)> = anchors
                .iter()
                .cloned()
                .zip(entries.iter().cloned())
                .collect();
            pending.sort_by_key(|(anchor, _)| (anchor.first_recorded_time, anchor.sequence));
            let mut pending = pending.into_iter().peekable();
            let mut events = events.to_vec();
            events.sort_by(|left, right| {
                (left.recorded_time, &left.event_id).cmp(&(right.recorded_time, &right.event_id))
            });
            let mut verifier = ProgressVerifier::new();
            let open = |verifier: &mut ProgressVerifier,
                        (anchor, digest): (ProgressAnchor, String)| {
                let id = anchor.id.clone();
                verifier.open(anchor, Some((PROGRESS_BATCH, id.as_str(), digest.as_str())))
            };
            for event in &events {
                while let Some(next) =
                    pending.next_if(|(anchor, _)| anchor.first_recorded_time <= event.recorded_time)
                {
                    open(&mut verifier, next);
                }
                if !verifier.check_event(event) {
                    break;
                }
            }
            for next in pending {
                open(&mut verifier, next);
            }
            verifier.finish()
        }

        fn verify(anchors: &[ProgressAnchor], events: &[StoredProgressEvent]) -> ProgressReport {
            let entries: Vec<String> = anchors.iter().map(ProgressAnchor::change_digest).collect();
            verify_with(anchors, &entries, events)
        }

        fn problem(report: &ProgressReport) -> (ProgressProblemKind, &str, i64) {
            let problem = report.problem.as_ref().expect("a problem");
            (
                problem.kind,
                problem.event_id.as_str(),
                problem.anchor_sequence,
            )
        }

        /// Three transactions; the last two committed at the same microsecond (concurrent
        /// transactions on PostgreSQL), their events interleaved by id.
        fn history() -> (Vec<StoredProgressEvent>, Vec<ProgressAnchor>) {
            let groups = vec![
                vec![event(1, 0), event(2, 0), event(3, 0)],
                vec![event(4, 10), event(6, 10)],
                vec![event(5, 10), event(7, 10)],
            ];
            let anchors = anchors(&groups);
            (groups.concat(), anchors)
        }

        #[test]
        fn untouched_events_match_their_anchors() {
            let (events, anchors) = history();
            let report = verify(&anchors, &events);
            assert_eq!(
                report,
                ProgressReport {
                    events_checked: 7,
                    anchors_checked: 3,
                    problem: None
                }
            );
        }

        #[test]
        fn an_edited_event_is_named_with_its_anchor() {
            let (mut events, anchors) = history();
            events[5].score = Some(100);
            let report = verify(&anchors, &events);
            assert_eq!(
                problem(&report),
                (
                    ProgressProblemKind::EventEdited,
                    events[5].event_id.as_str(),
                    3
                )
            );
        }

        #[test]
        fn a_deleted_event_is_named_with_its_anchor() {
            let (mut events, anchors) = history();
            let deleted = events.remove(3);
            let report = verify(&anchors, &events);
            assert_eq!(
                problem(&report),
                (
                    ProgressProblemKind::EventDeleted,
                    deleted.event_id.as_str(),
                    2
                )
            );
        }

        #[test]
        fn the_last_event_deleted_is_found_at_the_end() {
            let (mut events, anchors) = history();
            let deleted = events.remove(6);
            assert_eq!(
                problem(&verify(&anchors, &events)).1,
                deleted.event_id.as_str()
            );
        }

        #[test]
        fn an_inserted_event_is_unanchored_even_at_an_anchored_time() {
            let (mut events, anchors) = history();
            for recorded in [10, 20, -5] {
                let forged = event(99, recorded);
                events.push(forged.clone());
                assert_eq!(
                    problem(&verify(&anchors, &events)),
                    (
                        ProgressProblemKind::EventUnanchored,
                        forged.event_id.as_str(),
                        0
                    ),
                    "inserted at {recorded}"
                );
                events.pop();
            }
        }

        #[test]
        fn an_anchor_that_does_not_match_its_entry_is_tampered() {
            let (events, mut anchors) = history();
            let entries: Vec<String> = anchors.iter().map(ProgressAnchor::change_digest).collect();
            anchors[1].event_count = 1;
            let report = verify_with(&anchors, &entries, &events);
            assert_eq!(problem(&report).0, ProgressProblemKind::AnchorTampered);
            assert_eq!(problem(&report).2, 2);
        }

        #[test]
        fn an_anchor_without_its_entry_is_tampered() {
            let (events, anchors) = history();
            let mut verifier = ProgressVerifier::new();
            assert!(!verifier.open(anchors[0].clone(), None));
            assert!(!verifier.check_event(&events[0]));
            assert_eq!(
                problem(&verifier.finish()),
                (ProgressProblemKind::AnchorTampered, "", 1)
            );
        }

        #[test]
        fn a_moved_recorded_time_is_found() {
            let (mut events, anchors) = history();
            events[0].recorded_time += TimeDelta::microseconds(1);
            let report = verify(&anchors, &events);
            assert_eq!(problem(&report).1, events[0].event_id.as_str());
        }

        #[test]
        fn a_genesis_range_anchors_events_of_many_times() {
            let events: Vec<StoredProgressEvent> = (0..50)
                .map(|number| event(number, i64::from(number % 7)))
                .collect();
            let anchors = anchors(&[events[..20].to_vec(), events[20..].to_vec()]);
            assert_eq!(anchors[0].first_recorded_time, at(0));
            assert_eq!(anchors[0].last_recorded_time, at(6));
            let report = verify(&anchors, &events);
            assert_eq!((report.events_checked, report.problem), (50, None));
        }

        #[test]
        fn negative_zero_digests_as_zero() {
            let mut zero = event(1, 0);
            zero.ack_percent_complete = 0.0;
            let mut negative = zero.clone();
            negative.ack_percent_complete = -0.0;
            assert_eq!(zero.digest(), negative.digest());
        }

        /// Changes field `field` (0..17) of `event` to something else derived from `seed`.
        fn change(event: &mut StoredProgressEvent, field: usize, seed: u32) {
            let other = |text: &str| format!("{text}{seed}");
            let micros = TimeDelta::microseconds(i64::from(seed) + 1);
            match field {
                0 => event.event_id = other(&event.event_id),
                1 => event.enrollment_id = other(&event.enrollment_id),
                2 => event.activity_id = other(&event.activity_id),
                3 => event.verb = other(&event.verb),
                4 => {
                    event.score = match event.score {
                        Some(score) if seed.is_multiple_of(2) => Some(score + 1 + seed as i32 % 50),
                        _ => None,
                    }
                }
                5 => event.duration_seconds += i64::from(seed) + 1,
                6 => event.occurred_time += micros,
                7 => event.source = other(&event.source),
                8 => event.evidence_uri = Some(other("")),
                9 => event.evidence_note = None,
                10 => event.provenance_note = Some(String::new()),
                11 => event.actor = other(&event.actor),
                12 => event.payload_hash = other(&event.payload_hash),
                13 => event.recorded_time += micros,
                14 => event.ack_activity_state = other(&event.ack_activity_state),
                15 => event.ack_percent_complete += f64::from(seed) + 0.5,
                _ => event.ack_enrollment_state = other(&event.ack_enrollment_state),
            }
        }

        proptest! {
            #[test]
            fn any_change_of_any_field_changes_the_digest(field in 0usize..17, seed in 0u32..1000) {
                let original = event(seed, i64::from(seed));
                let mut changed = original.clone();
                change(&mut changed, field, seed);
                prop_assert_ne!(&changed, &original);
                prop_assert_ne!(changed.digest(), original.digest());
            }

            #[test]
            fn moving_text_between_adjacent_fields_changes_the_digest(cut in 0usize..8) {
                // Length prefixes: "ab" + "cd" never digests like "a" + "bcd".
                let mut left = event(1, 0);
                left.enrollment_id = "enrollment".to_owned();
                left.activity_id = "activity".to_owned();
                let mut right = left.clone();
                let joined = format!("{}{}", left.enrollment_id, left.activity_id);
                right.enrollment_id = joined[..cut].to_owned();
                right.activity_id = joined[cut..].to_owned();
                prop_assert_ne!(left.digest(), right.digest());
            }

            #[test]
            fn editing_any_field_of_any_anchored_event_names_it(
                count in 1usize..12, victim in 0usize..12, field in 0usize..17, seed in 0u32..1000
            ) {
                let victim = victim % count;
                let mut events: Vec<StoredProgressEvent> =
                    (0..count as u32).map(|number| event(number, 0)).collect();
                let anchors = anchors(&[events.clone()]);
                let original_id = events[victim].event_id.clone();
                change(&mut events[victim], field, seed);
                let report = verify(&anchors, &events);
                let found = report.problem.expect("the edit is found");
                // An edited id reads as an inserted event and a deleted one, whichever comes
                // first; any other field names the event as edited.
                if field == 0 {
                    prop_assert!(found.event_id == original_id || found.event_id == events[victim].event_id);
                } else {
                    prop_assert_eq!(found.event_id, original_id);
                }
            }
        }
    }
}
