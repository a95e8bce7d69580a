//! `lms.v1.EventService`.
//!
//! Watchers share one tail of the outbox per process ([`FeedHub`]): a single task reads each new
//! event once and fans it out in memory, so ten thousand idle watchers cost the database what one
//! does. A watcher reads the database itself only to catch up from its cursor (at start, and
//! again if it falls too far behind the fan-out); live events reach it through the hub.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::domain::{
    event::{self, FeedEvent},
    feed::{self, FeedRefusal, FeedState},
    organization::optional_id_or_error,
};
use crate::pb;
use crate::store::{Store, event::EventFilter};

/// Events read per query.
const PAGE: u64 = 500;
/// Longest wait for a new event before looking again (covers a lost notification).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Events the hub keeps for watchers that are momentarily slow; one further behind catches up
/// from the database.
const FAN_OUT_BUFFER: usize = 4096;

/// Handlers of `EventService`.
#[derive(Clone)]
pub struct EventApi {
    store: Store,
    hub: Arc<FeedHub>,
    watchers: Arc<crate::telemetry::Watchers>,
}

impl EventApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            hub: Arc::new(FeedHub::new(store.clone())),
            store,
            watchers: Arc::default(),
        }
    }

    /// Returns the open watchers' positions, for the lag metrics.
    pub fn watchers(&self) -> Arc<crate::telemetry::Watchers> {
        self.watchers.clone()
    }
}

/// The one tail of the outbox of this process, fanned out to every watcher.
///
/// Its task runs while anyone watches: started by the first subscriber, it stops when the last
/// one has gone.
pub struct FeedHub {
    store: Store,
    sender: broadcast::Sender<Arc<FeedEvent>>,
    running: Mutex<bool>,
    /// The cursor the running tail started after: every later event is sent to subscribers.
    started: tokio::sync::watch::Sender<Option<i64>>,
}

impl FeedHub {
    fn new(store: Store) -> Self {
        Self {
            store,
            sender: broadcast::Sender::new(FAN_OUT_BUFFER),
            running: Mutex::new(false),
            started: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Subscribes to every event committed from now on, starting the tail if it is not running.
    fn subscribe(self: &Arc<Self>) -> broadcast::Receiver<Arc<FeedEvent>> {
        let receiver = self.sender.subscribe();
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if !*running {
            *running = true;
            tokio::spawn(self.clone().tail());
        }
        receiver
    }

    /// Reads the outbox after the last event seen and sends each event to every subscriber.
    async fn tail(self: Arc<Self>) {
        let signal = self.store.feed_signal();
        let mut head = None;
        loop {
            {
                let mut running = self
                    .running
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                if self.sender.receiver_count() == 0 {
                    *running = false;
                    self.started.send_replace(None);
                    return;
                }
            }
            // Registered before the query, so a commit between the query and the wait still wakes us.
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let read = match head {
                None => self.store.last_event_cursor().await.map(|last| {
                    head = Some(last);
                    self.started.send_replace(Some(last));
                    Vec::new()
                }),
                Some(after) => {
                    self.store
                        .events_after(after, &EventFilter::default(), PAGE)
                        .await
                }
            };
            let events = match read {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(error = %error, "the event feed could not read the outbox; retrying");
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
            };
            let full = events.len() as u64 == PAGE;
            for event in events {
                head = Some(event.cursor);
                let _ = self.sender.send(Arc::new(event));
            }
            if !full {
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::DomainEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::event_service_server::EventService for EventApi {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let subject = crate::auth::context(&request)
            .map(|context| context.principal.subject)
            .unwrap_or_default();
        let message = request.into_inner();
        let position = feed::parse_resume_point(
            &message.resume_token,
            message.after_cursor,
            &message.history,
        )?;
        let types = event::validate_types(&message.types)?;
        let organization_path_prefix =
            match optional_id_or_error("organization_subtree", &message.organization_subtree)? {
                Some(root) => Some(self.store.get_organization(&root).await?.path),
                None => None,
            };
        let filter = EventFilter {
            types,
            organization_path_prefix,
        };
        let state = self.store.feed_state().await?;
        if let Err(refusal) = feed::check_resume(&state, &position) {
            return Err(refusal_status(refusal, &state, position.cursor));
        }
        let store = self.store.clone();
        let hub = self.hub.clone();
        let until_caught_up = message.until_caught_up;
        let cursor = position.cursor;
        let history = state.history.clone();
        let watching = self.watchers.register(subject, cursor);
        let (sender, receiver) = mpsc::channel::<Result<pb::DomainEvent, Status>>(PAGE as usize);
        tokio::spawn(async move {
            let watcher = Watcher {
                store,
                hub,
                filter,
                history,
                sender,
                watching,
            };
            if let Err(status) = watcher.watch(cursor, until_caught_up).await {
                let _ = watcher.sender.send(Err(status)).await;
            }
        });
        let mut response: Response<Self::WatchEventsStream> =
            Response::new(Box::pin(ReceiverStream::new(receiver)));
        let headers = response.metadata_mut();
        if let Ok(value) = state.history.parse() {
            headers.insert(HISTORY_HEADER, value);
        }
        headers.insert(HEAD_HEADER, state.head.into());
        Ok(response)
    }
}

/// One watcher's stream: where its events come from, what it wants, and where they go.
struct Watcher {
    store: Store,
    hub: Arc<FeedHub>,
    filter: EventFilter,
    /// The feed history the stream started in; every event sent carries it.
    history: String,
    sender: mpsc::Sender<Result<pb::DomainEvent, Status>>,
    /// The watcher's cursor as the lag metrics see it.
    watching: crate::telemetry::WatcherPosition,
}

impl Watcher {
    /// Sends every event after `cursor` that passes the filter: first from the database until
    /// caught up, then live from the hub. Returns when the watcher hangs up (or, with
    /// `until_caught_up`, once caught up).
    async fn watch(&self, mut cursor: i64, until_caught_up: bool) -> Result<(), Status> {
        loop {
            // Subscribed before catching up, and the catch-up ends after the hub's tail has
            // started: every event after the tail's start arrives through the hub, and every
            // event up to it is in the database for the catch-up to read. Live events the
            // catch-up already sent are skipped by cursor.
            let mut live = self.hub.subscribe();
            self.catch_up(&mut cursor).await?;
            if until_caught_up || self.sender.is_closed() {
                return Ok(());
            }
            let mut started = self.hub.started.subscribe();
            if started.wait_for(Option::is_some).await.is_err() {
                return Ok(());
            }
            self.catch_up(&mut cursor).await?;
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    () = self.sender.closed() => return Ok(()),
                };
                match received {
                    Ok(event) => {
                        if event.cursor <= cursor {
                            continue;
                        }
                        cursor = event.cursor;
                        self.watching.set(cursor);
                        if self.filter.matches(&event)
                            && self
                                .sender
                                .send(Ok(to_proto(FeedEvent::clone(&event), &self.history)))
                                .await
                                .is_err()
                        {
                            return Ok(());
                        }
                    }
                    // Too slow for the fan-out buffer: catch up from the database again.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }

    /// Sends every event after `cursor` that the database holds now, page by page, moving
    /// `cursor`.
    ///
    /// After each page the feed is read again: a page read while retention deleted events after
    /// the watcher's position, or after the feed's history changed, is not sent (CURSOR_EXPIRED,
    /// FEED_HISTORY_CHANGED). The check follows the read, so a deletion it does not see had not
    /// reached the page's events when they were read.
    async fn catch_up(&self, cursor: &mut i64) -> Result<(), Status> {
        loop {
            // From a hot standby when one is usable; the store ends short pages on the primary.
            let events = self
                .store
                .backlog_events_after(*cursor, &self.filter, PAGE)
                .await?;
            let state = self.store.feed_state().await?;
            let position = feed::ResumePoint {
                history: Some(self.history.clone()),
                cursor: *cursor,
            };
            if let Err(refusal @ (FeedRefusal::HistoryChanged | FeedRefusal::Expired)) =
                feed::check_resume(&state, &position)
            {
                return Err(refusal_status(refusal, &state, *cursor));
            }
            let caught_up = (events.len() as u64) < PAGE;
            for event in events {
                *cursor = event.cursor;
                self.watching.set(*cursor);
                if self
                    .sender
                    .send(Ok(to_proto(event, &self.history)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            if caught_up {
                // Events past the cursor up to the head read above, if any, were filtered out.
                self.watching.set((*cursor).max(state.head));
                return Ok(());
            }
        }
    }
}

/// Response header naming the feed history when a stream opens.
pub const HISTORY_HEADER: &str = "lms-feed-history";
/// Response header carrying the feed's head (last cursor) when a stream opens.
pub const HEAD_HEADER: &str = "lms-feed-head";

/// Returns FAILED_PRECONDITION for `refusal` of a watcher at `cursor`: `ErrorInfo` with the
/// reason and the feed's `history`, `head`, `pruned_through` and `head_resume_token` (where to
/// watch from after a resynchronisation), and a `PreconditionFailure`.
fn refusal_status(refusal: FeedRefusal, state: &FeedState, cursor: i64) -> Status {
    let message = format!(
        "{}; resynchronise from a snapshot (read the current state), then watch from \
         head_resume_token {}",
        refusal.explanation(),
        feed::resume_token(&state.history, state.head),
    );
    let mut details = ErrorDetails::new();
    details.set_error_info(
        refusal.reason().as_str(),
        crate::error::ERROR_DOMAIN,
        HashMap::from([
            ("history".to_owned(), state.history.clone()),
            ("head".to_owned(), state.head.to_string()),
            (
                "pruned_through".to_owned(),
                state.pruned_through.to_string(),
            ),
            (
                "head_resume_token".to_owned(),
                feed::resume_token(&state.history, state.head),
            ),
            ("cursor".to_owned(), cursor.to_string()),
        ]),
    );
    details.add_precondition_failure_violation(
        refusal.reason().as_str(),
        "feed",
        refusal.explanation(),
    );
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

fn to_proto(event: FeedEvent, history: &str) -> pb::DomainEvent {
    pb::DomainEvent {
        resume_token: feed::resume_token(history, event.cursor),
        history: history.to_owned(),
        cursor: event.cursor,
        id: event.id,
        r#type: event.event_type,
        subject_id: event.subject_id,
        person_id: event.person_id.unwrap_or_default(),
        organization_id: event.organization_id.unwrap_or_default(),
        time: Some(super::timestamp(event.time)),
        payload_json: event.payload,
        person_external_id: event.person_external_id.unwrap_or_default(),
        organization_external_code: event.organization_external_code.unwrap_or_default(),
    }
}
