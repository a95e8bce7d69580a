//! `lms.v1.EventService`.

use std::{pin::Pin, time::Duration};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::{event, organization::optional_id_or_error};
use crate::pb;
use crate::store::{Store, event::EventFilter};

/// Events read per query.
const PAGE: u64 = 500;
/// Longest wait for a new event before looking again (covers a lost notification).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Handlers of `EventService`.
#[derive(Clone)]
pub struct EventApi {
    store: Store,
}

impl EventApi {
    /// Returns the handlers over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
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
        let signal = store.feed_signal();
        let until_caught_up = message.until_caught_up;
        let mut cursor = message.after_cursor;
        let (sender, receiver) = mpsc::channel::<Result<pb::DomainEvent, Status>>(PAGE as usize);
        tokio::spawn(async move {
            loop {
                // Registered before the query, so a commit between the query and the wait still wakes us.
                let notified = signal.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let events = match store.events_after(cursor, &filter, PAGE).await {
                    Ok(events) => events,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                let caught_up = (events.len() as u64) < PAGE;
                for event in events {
                    cursor = event.cursor;
                    let message = pb::DomainEvent {
                        cursor: event.cursor,
                        id: event.id,
                        r#type: event.event_type,
                        subject_id: event.subject_id,
                        person_id: event.person_id.unwrap_or_default(),
                        organization_id: event.organization_id.unwrap_or_default(),
                        time: Some(super::timestamp(event.time)),
                        payload_json: event.payload,
                    };
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                if !caught_up {
                    continue;
                }
                if until_caught_up {
                    return;
                }
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
