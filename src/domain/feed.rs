//! Positions in the event feed: the history a cursor belongs to, resume tokens, and whether a
//! watcher may resume from where it says it is.
//!
//! A cursor alone is a number, and a restored database numbers its later events again from the
//! restored head: a cursor kept from before the restore would then name different events. Every
//! feed therefore has a history (32 hex digits, made with the database and replaced by the
//! restore procedure), and a resume token carries it: `<history>.<cursor>`. A watcher is refused
//! with a reason it can act on, never served silently, when its position cannot be honoured.

use crate::error::{Error, Reason, Result};

/// Length of a history id: 32 lowercase hex digits.
pub const HISTORY_LEN: usize = 32;

/// The state of the feed a resuming watcher is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedState {
    /// The feed's history id.
    pub history: String,
    /// The cursor of the last event published (0 when none was).
    pub head: i64,
    /// Events up to this cursor were deleted by retention (0 when none were).
    pub pruned_through: i64,
}

/// Where a watcher asks to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The history the cursor belongs to; `None` for a bare cursor (checked against the head and
    /// retention only).
    pub history: Option<String>,
    /// The last cursor the watcher processed; 0 for the start of the retained feed.
    pub cursor: i64,
}

/// Why a watcher may not resume from its position. Each asks the watcher to resynchronise from a
/// snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRefusal {
    /// The cursor belongs to another history: the database was restored since (or it is another
    /// deployment's feed).
    HistoryChanged,
    /// The cursor is past the last event: the watcher saw events this database does not have.
    BeyondHead,
    /// Events after the cursor were deleted by retention.
    Expired,
}

impl FeedRefusal {
    /// Returns the stable reason reported in `ErrorInfo`.
    pub fn reason(self) -> Reason {
        match self {
            Self::HistoryChanged => Reason::FeedHistoryChanged,
            Self::BeyondHead => Reason::CursorBeyondHead,
            Self::Expired => Reason::CursorExpired,
        }
    }

    /// Returns a developer-facing explanation of the refusal.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::HistoryChanged => {
                "the cursor belongs to another feed history (the database was restored from a backup)"
            }
            Self::BeyondHead => "the cursor is beyond the last event of the feed",
            Self::Expired => "events after the cursor were deleted by retention",
        }
    }
}

/// Returns whether a watcher at `point` may resume on a feed in `state`.
pub fn check_resume(state: &FeedState, point: &ResumePoint) -> Result<(), FeedRefusal> {
    if point
        .history
        .as_deref()
        .is_some_and(|history| history != state.history)
    {
        return Err(FeedRefusal::HistoryChanged);
    }
    if point.cursor > state.head {
        return Err(FeedRefusal::BeyondHead);
    }
    // Cursor 0 asks for the whole retained feed, whatever was pruned.
    if point.cursor > 0 && point.cursor < state.pruned_through {
        return Err(FeedRefusal::Expired);
    }
    Ok(())
}

/// Returns the resume token of `cursor` in `history`: `<history>.<cursor>`.
pub fn resume_token(history: &str, cursor: i64) -> String {
    format!("{history}.{cursor}")
}

/// Returns a new random history id.
pub fn new_history() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Returns true when `history` has the form of a history id.
pub fn is_history(history: &str) -> bool {
    history.len() == HISTORY_LEN
        && history
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Parses the position fields of a watch request: either `resume_token`, or `after_cursor` with
/// an optional `history`. Malformed or conflicting fields are INVALID_ARGUMENT naming the field.
pub fn parse_resume_point(
    resume_token: &str,
    after_cursor: i64,
    history: &str,
) -> Result<ResumePoint> {
    if !resume_token.is_empty() {
        if after_cursor != 0 || !history.is_empty() {
            return Err(Error::invalid(
                "resume_token",
                "set either resume_token, or after_cursor with history; not both",
            ));
        }
        let parsed = resume_token
            .split_once('.')
            .filter(|(history, _)| is_history(history))
            .and_then(|(history, text)| {
                // Only the canonical decimal form a token is written in: no sign, no leading zero.
                let cursor = text.parse::<i64>().ok().filter(|cursor| *cursor >= 0)?;
                (cursor.to_string() == text).then_some((history, cursor))
            });
        let Some((history, cursor)) = parsed else {
            return Err(Error::invalid(
                "resume_token",
                "is not a resume token of this feed (DomainEvent.resume_token)",
            ));
        };
        return Ok(ResumePoint {
            history: Some(history.to_owned()),
            cursor,
        });
    }
    if after_cursor < 0 {
        return Err(Error::invalid("after_cursor", "must not be negative"));
    }
    if !history.is_empty() && !is_history(history) {
        return Err(Error::invalid(
            "history",
            "is not a feed history id (DomainEvent.history: 32 hex digits)",
        ));
    }
    Ok(ResumePoint {
        history: (!history.is_empty()).then(|| history.to_owned()),
        cursor: after_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> FeedState {
        FeedState {
            history: "0123456789abcdef0123456789abcdef".to_owned(),
            head: 100,
            pruned_through: 40,
        }
    }

    fn at(history: Option<&str>, cursor: i64) -> ResumePoint {
        ResumePoint {
            history: history.map(str::to_owned),
            cursor,
        }
    }

    #[test]
    fn a_position_in_the_retained_feed_of_the_same_history_resumes() {
        let state = state();
        for cursor in [0, 40, 99, 100] {
            assert_eq!(
                check_resume(&state, &at(Some(&state.history), cursor)),
                Ok(())
            );
            assert_eq!(check_resume(&state, &at(None, cursor)), Ok(()));
        }
    }

    #[test]
    fn another_history_is_refused_before_anything_else() {
        let other = Some("ffffffffffffffffffffffffffffffff");
        assert_eq!(
            check_resume(&state(), &at(other, 50)),
            Err(FeedRefusal::HistoryChanged)
        );
        assert_eq!(
            check_resume(&state(), &at(other, 500)),
            Err(FeedRefusal::HistoryChanged)
        );
        assert_eq!(
            check_resume(&state(), &at(other, 0)),
            Err(FeedRefusal::HistoryChanged)
        );
    }

    #[test]
    fn a_cursor_past_the_head_or_below_retention_is_refused() {
        assert_eq!(
            check_resume(&state(), &at(None, 101)),
            Err(FeedRefusal::BeyondHead)
        );
        assert_eq!(
            check_resume(&state(), &at(None, 39)),
            Err(FeedRefusal::Expired)
        );
        assert_eq!(
            check_resume(&state(), &at(None, 1)),
            Err(FeedRefusal::Expired)
        );
    }

    #[test]
    fn resume_tokens_round_trip_and_malformed_ones_name_the_field() {
        let history = new_history();
        assert!(is_history(&history));
        let token = resume_token(&history, 42);
        assert_eq!(
            parse_resume_point(&token, 0, "").unwrap(),
            at(Some(&history), 42)
        );
        for bad in [
            "42",
            "x.1",
            &format!("{history}."),
            &format!("{history}.-1"),
            &format!("{history}.+1"),
            &format!("{history}.01"),
            &format!("{}.1", history.to_uppercase()),
        ] {
            let Err(Error::InvalidArgument(violations)) = parse_resume_point(bad, 0, "") else {
                panic!("{bad} is accepted");
            };
            assert_eq!(violations.as_slice()[0].field, "resume_token");
        }
        assert!(parse_resume_point(&token, 3, "").is_err());
        let Err(Error::InvalidArgument(violations)) = parse_resume_point("", 3, "nope") else {
            panic!("a malformed history is accepted");
        };
        assert_eq!(violations.as_slice()[0].field, "history");
        assert_eq!(
            parse_resume_point("", 3, &history).unwrap(),
            at(Some(&history), 3)
        );
        assert!(parse_resume_point("", -1, "").is_err());
    }
}
