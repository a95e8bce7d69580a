//! `lms.v1.EventService`.
//!
//! Watchers share one tail of the outbox per process ([`FeedHub`]): a single task reads each new
//! event once and fans it out in memory, so ten thousand idle watchers cost the database what one
//! does. A watcher reads the database itself only to catch up from its cursor (at start, and
//! again if it falls too far behind the fan-out); live events reach it through the hub.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::{
    event::{self, FeedEvent},
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
}

impl EventApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            hub: Arc::new(FeedHub::new(store.clone())),
            store,
        }
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
        let message = request.into_inner();
        if message.after_cursor < 0 {
            return Err(
                crate::error::Error::invalid("after_cursor", "must not be negative").into(),
            );
        }
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
        let store = self.store.clone();
        let hub = self.hub.clone();
        let until_caught_up = message.until_caught_up;
        let cursor = message.after_cursor;
        let (sender, receiver) = mpsc::channel::<Result<pb::DomainEvent, Status>>(PAGE as usize);
        tokio::spawn(async move {
            if let Err(status) = watch(store, hub, filter, cursor, until_caught_up, &sender).await {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends `sender` every event after `cursor` that passes `filter`: first from the database until
/// caught up, then live from the hub. Returns when the watcher hangs up (or, with
/// `until_caught_up`, once caught up).
async fn watch(
    store: Store,
    hub: Arc<FeedHub>,
    filter: EventFilter,
    mut cursor: i64,
    until_caught_up: bool,
    sender: &mpsc::Sender<Result<pb::DomainEvent, Status>>,
) -> Result<(), Status> {
    loop {
        // Subscribed before catching up, and the catch-up ends after the hub's tail has
        // started: every event after the tail's start arrives through the hub, and every event
        // up to it is in the database for the catch-up to read. Live events the catch-up already
        // sent are skipped by cursor.
        let mut live = hub.subscribe();
        catch_up(&store, &filter, &mut cursor, sender).await?;
        if until_caught_up || sender.is_closed() {
            return Ok(());
        }
        let mut started = hub.started.subscribe();
        if started.wait_for(Option::is_some).await.is_err() {
            return Ok(());
        }
        catch_up(&store, &filter, &mut cursor, sender).await?;
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = sender.closed() => return Ok(()),
            };
            match received {
                Ok(event) => {
                    if event.cursor <= cursor {
                        continue;
                    }
                    cursor = event.cursor;
                    if filter.matches(&event)
                        && sender
                            .send(Ok(to_proto(FeedEvent::clone(&event))))
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

/// Sends every event after `cursor` that the database holds now, page by page, moving `cursor`.
async fn catch_up(
    store: &Store,
    filter: &EventFilter,
    cursor: &mut i64,
    sender: &mpsc::Sender<Result<pb::DomainEvent, Status>>,
) -> Result<(), Status> {
    loop {
        let events = store.events_after(*cursor, filter, PAGE).await?;
        let caught_up = (events.len() as u64) < PAGE;
        for event in events {
            *cursor = event.cursor;
            if sender.send(Ok(to_proto(event))).await.is_err() {
                return Ok(());
            }
        }
        if caught_up {
            return Ok(());
        }
    }
}

fn to_proto(event: FeedEvent) -> pb::DomainEvent {
    pb::DomainEvent {
        cursor: event.cursor,
        id: event.id,
        r#type: event.event_type,
        subject_id: event.subject_id,
        person_id: event.person_id.unwrap_or_default(),
        organization_id: event.organization_id.unwrap_or_default(),
        time: Some(super::timestamp(event.time)),
        payload_json: event.payload,
    }
}
