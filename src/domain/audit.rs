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
}
