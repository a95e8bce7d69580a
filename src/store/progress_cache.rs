//! The progress read cache: answers of GetEnrollmentProgress (by enrolment) and of ListProgress
//! for one cohort (by cohort, order, page and the caller's visibility), kept in memory so that
//! the most frequent reads of a learner dashboard or a trainer's cohort view skip the database.
//!
//! Correctness rests on three rules:
//!
//! - **Every write says what it changed.** A write transaction that changes an enrolment, its
//!   activity tallies or its summary calls [`touch`] with the enrolment and its cohort (or
//!   [`touch_everything`] when it moves people or organisations, which changes who may read what).
//!   [`Store::write`](super::Store::write) collects the marks of the transaction; after the
//!   commit it invalidates them here, before the call answers, so a caller reads its own writes
//!   on this replica. On PostgreSQL it then hands them to the notifier ([`spawn_notifier`]),
//!   which sends them with `pg_notify` on [`CHANNEL`] to every replica's listener, coalescing
//!   what arrives while a send is in flight; each replica invalidates on arrival. The
//!   notification is sent after the commit, in a transaction of its own with
//!   `synchronous_commit` off: PostgreSQL serialises the commits of notifying transactions, and
//!   a NOTIFY inside every progress transaction would serialise the progress writes with it.
//! - **An entry is valid only while nothing invalidated its key since its read began.** Keys
//!   hash to stripes with a counter each; invalidating bumps the counter. A reader takes the
//!   counter (and the flush epoch) *before* it reads the database and stores them with the
//!   answer; a lookup serves the answer only if both are unchanged. A read that raced a commit
//!   therefore never serves what it read: the commit's bump comes after the read began.
//! - **No listener, no cache.** On PostgreSQL the cache serves nothing until this replica's
//!   listener has subscribed, and flushes and stops serving whenever the listener's connection
//!   drops (notifications sent meanwhile are lost). SQLite has one server process and every
//!   write goes through it, so its cache is always live.
//!
//! Two more bounds: an answer older than the TTL is never served (changes made outside any
//! server, such as SQL by hand, or a write whose server died between its commit and its
//! notification, are seen within it), and a call that carries a commit position (`lms-min-lsn`)
//! bypasses the cache and reads the primary.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use quick_cache::Weighter;

use crate::pb;

/// PostgreSQL notification channel of progress invalidations.
pub const CHANNEL: &str = "lms_progress";

/// Payload of a notification that invalidates everything.
const EVERYTHING: &str = "*";

/// Largest notification payload sent (PostgreSQL's limit is 8,000 bytes).
const PAYLOAD_BYTES: usize = 7_800;

/// Invalidation stripes: a bump invalidates the keys of one stripe.
const STRIPES: usize = 4096;

tokio::task_local! {
    /// What the write transaction of the current task changed.
    pub(crate) static TOUCHED: RefCell<Touched>;
}

/// What one write transaction changed, as far as cached progress answers go.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    /// Enrolments whose GetEnrollmentProgress answer may have changed.
    pub enrollments: BTreeSet<String>,
    /// Cohorts whose ListProgress pages may have changed.
    pub cohorts: BTreeSet<String>,
    /// Who may read what may have changed (people or organisations moved): drop everything.
    pub everything: bool,
}

impl Touched {
    /// Returns true when nothing was marked.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.enrollments.is_empty() && self.cohorts.is_empty()
    }

    /// Returns the notification payloads that carry these marks: comma-separated `e:<id>` and
    /// `c:<id>` items, each payload under PostgreSQL's size limit; `*` for everything.
    pub fn payloads(&self) -> Vec<String> {
        if self.everything {
            return vec![EVERYTHING.to_owned()];
        }
        let items = self
            .enrollments
            .iter()
            .map(|id| format!("e:{id}"))
            .chain(self.cohorts.iter().map(|id| format!("c:{id}")));
        let mut payloads = Vec::new();
        let mut current = String::new();
        for item in items {
            if !current.is_empty() && current.len() + 1 + item.len() > PAYLOAD_BYTES {
                payloads.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(',');
            }
            current.push_str(&item);
        }
        if !current.is_empty() {
            payloads.push(current);
        }
        payloads
    }

    /// Reads the marks of one payload (see [`Touched::payloads`]); unknown items are ignored.
    pub fn parse(payload: &str) -> Self {
        let mut touched = Self::default();
        for item in payload.split(',') {
            if item == EVERYTHING {
                touched.everything = true;
            } else if let Some(id) = item.strip_prefix("e:") {
                touched.enrollments.insert(id.to_owned());
            } else if let Some(id) = item.strip_prefix("c:") {
                touched.cohorts.insert(id.to_owned());
            }
        }
        touched
    }
}

/// Marks, inside a write transaction, that the progress answers of `enrollment_id` (in
/// `cohort_id`) change when it commits. A no-op outside [`Store::write`](super::Store::write).
pub(crate) fn touch(enrollment_id: &str, cohort_id: &str) {
    let _ = TOUCHED.try_with(|touched| {
        let mut touched = touched.borrow_mut();
        touched.enrollments.insert(enrollment_id.to_owned());
        touched.cohorts.insert(cohort_id.to_owned());
    });
}

/// Marks, inside a write transaction, that every cached answer may be wrong when it commits
/// (a person or an organisation moved: owners' organisation paths changed).
pub(crate) fn touch_everything() {
    let _ = TOUCHED.try_with(|touched| touched.borrow_mut().everything = true);
}

/// Starts the task that sends committed invalidations to every replica (PostgreSQL); it ends
/// when the last sender is dropped. A send that fails is retried once, then given up with a
/// warning: other replicas then serve the old answers until the TTL.
pub(crate) fn spawn_notifier(
    db: sea_orm::DatabaseConnection,
) -> tokio::sync::mpsc::UnboundedSender<Touched> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Touched>();
    tokio::spawn(async move {
        while let Some(mut touched) = receiver.recv().await {
            // Everything that arrived while the last send was in flight goes out together.
            while let Ok(more) = receiver.try_recv() {
                touched.everything |= more.everything;
                touched.enrollments.extend(more.enrollments);
                touched.cohorts.extend(more.cohorts);
            }
            if touched.everything {
                touched.enrollments.clear();
                touched.cohorts.clear();
            }
            for attempt in 0..2 {
                match notify(&db, &touched).await {
                    Ok(()) => break,
                    Err(error) if attempt == 0 => {
                        tracing::debug!(error = %error, "progress invalidation not sent; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => tracing::warn!(
                        error = %error,
                        "progress invalidation not sent; other replicas may serve cached answers until the TTL"
                    ),
                }
            }
        }
    });
    sender
}

/// Sends `touched` on [`CHANNEL`]: one statement, its own transaction, committed without
/// waiting for the disk (it carries no data).
async fn notify(db: &sea_orm::DatabaseConnection, touched: &Touched) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait as _;
    let payloads = touched.payloads();
    let mut calls = vec!["set_config('synchronous_commit', 'off', true)".to_owned()];
    calls.extend((1..=payloads.len()).map(|n| format!("pg_notify('{CHANNEL}', ${n})")));
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        format!("SELECT {}", calls.join(", ")),
        payloads.into_iter().map(Into::into),
    ))
    .await?;
    Ok(())
}

/// Labels of the cache's counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `enrollment` or `cohort_page`.
    pub kind: &'static str,
    /// `hit`, `miss` (read from the database) or `bypass` (the cache was off, not live, or the
    /// call carried a commit position).
    pub result: &'static str,
}

/// One cached answer with what it was read under.
#[derive(Debug)]
struct Entry<T> {
    value: Arc<T>,
    epoch: u64,
    stamp: u64,
    read_at: Instant,
    weight: u64,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            epoch: self.epoch,
            stamp: self.stamp,
            read_at: self.read_at,
            weight: self.weight,
        }
    }
}

#[derive(Debug, Clone)]
struct ByWeight;

impl<T> Weighter<String, Entry<T>> for ByWeight {
    fn weight(&self, key: &String, entry: &Entry<T>) -> u64 {
        key.len() as u64 + entry.weight
    }
}

/// A GetEnrollmentProgress answer with the owner facts its authorisation check needs.
#[derive(Debug, Clone)]
pub struct CachedEnrollment {
    /// The answer, encoded (a third of its decoded size in memory).
    pub message: Encoded<pb::EnrollmentProgress>,
    /// The learner.
    pub person_id: String,
    /// The cohort.
    pub cohort_id: String,
    /// The materialised path of the learner's organisation.
    pub organization_path: String,
}

/// A message kept encoded: a cached answer costs its wire size, and decoding one is cheaper
/// than reading it again by far.
#[derive(Debug, Clone)]
pub struct Encoded<M> {
    bytes: prost::bytes::Bytes,
    message: std::marker::PhantomData<M>,
}

impl<M: prost::Message + Default> Encoded<M> {
    /// Encodes `message`.
    pub fn new(message: &M) -> Self {
        Self {
            bytes: message.encode_to_vec().into(),
            message: std::marker::PhantomData,
        }
    }

    /// Returns the message.
    pub fn decode(&self) -> M {
        M::decode(self.bytes.clone()).unwrap_or_default()
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Proof that a read began: the invalidation counters it began under.
#[derive(Debug, Clone)]
pub struct Ticket {
    key: String,
    epoch: u64,
    stamp: u64,
}

type Map<T> = quick_cache::sync::Cache<String, Entry<T>, ByWeight>;

#[derive(Debug)]
struct Inner {
    enrollments: Map<CachedEnrollment>,
    pages: Map<Encoded<pb::ListProgressResponse>>,
    enrollment_stripes: Box<[AtomicU64]>,
    cohort_stripes: Box<[AtomicU64]>,
    epoch: AtomicU64,
    live: AtomicBool,
    ttl: Duration,
    hasher: std::hash::RandomState,
    requests: Family<CacheLabels, Counter>,
}

/// The progress read cache of one server (cheap to clone; clones share it).
#[derive(Debug, Clone, Default)]
pub struct ProgressCache(Option<Arc<Inner>>);

impl ProgressCache {
    /// Returns a cache of about `megabytes` MiB (none when 0) that serves answers for `ttl`;
    /// `live` says whether it may serve before a listener reports in (SQLite: yes).
    pub fn new(megabytes: u64, ttl: Duration, live: bool) -> Self {
        if megabytes == 0 || ttl.is_zero() {
            return Self(None);
        }
        let bytes = megabytes << 20;
        let inner = Inner {
            // Seven eighths for enrolments (about 2 KiB each encoded, 19 activities), one eighth
            // for cohort pages (about 8 KiB for 50 rows): a cohort's page serves 50 learners.
            enrollments: Map::with_weighter((bytes / 2048) as usize + 1, bytes / 8 * 7, ByWeight),
            pages: Map::with_weighter((bytes / 8 / 8192) as usize + 1, bytes / 8, ByWeight),
            enrollment_stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            cohort_stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(live),
            ttl,
            hasher: std::hash::RandomState::new(),
            requests: Family::default(),
        };
        Self(Some(Arc::new(inner)))
    }

    /// Returns the request counters (registered by the metrics endpoint).
    pub fn requests(&self) -> Family<CacheLabels, Counter> {
        self.0
            .as_ref()
            .map(|inner| inner.requests.clone())
            .unwrap_or_default()
    }

    /// Returns true when the cache may serve answers now.
    pub fn is_live(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|inner| inner.live.load(Ordering::SeqCst))
    }

    /// Starts serving: called once this replica listens for every other writer's invalidations.
    /// Everything read before is dropped (notifications sent before the listener subscribed
    /// were never received).
    pub fn go_live(&self) {
        if let Some(inner) = &self.0 {
            inner.epoch.fetch_add(1, Ordering::SeqCst);
            inner.live.store(true, Ordering::SeqCst);
        }
    }

    /// Stops serving and drops everything: the listener lost its connection.
    pub fn go_dark(&self) {
        if let Some(inner) = &self.0 {
            inner.live.store(false, Ordering::SeqCst);
            inner.epoch.fetch_add(1, Ordering::SeqCst);
            inner.enrollments.clear();
            inner.pages.clear();
        }
    }

    /// Invalidates what `touched` names (after its transaction committed, here or elsewhere).
    pub fn invalidate(&self, touched: &Touched) {
        let Some(inner) = &self.0 else { return };
        if touched.everything {
            inner.epoch.fetch_add(1, Ordering::SeqCst);
            inner.enrollments.clear();
            inner.pages.clear();
            return;
        }
        for id in &touched.enrollments {
            inner
                .stripe(&inner.enrollment_stripes, id)
                .fetch_add(1, Ordering::SeqCst);
            inner.enrollments.remove(id.as_str());
        }
        for id in &touched.cohorts {
            inner
                .stripe(&inner.cohort_stripes, id)
                .fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Returns the cached answer of enrolment `id`, or the ticket to store the answer read next.
    /// `Err(None)`: the cache does not apply to this call.
    pub fn enrollment(&self, id: &str) -> Result<Arc<CachedEnrollment>, Option<Ticket>> {
        let Some(inner) = self.usable("enrollment") else {
            return Err(None);
        };
        let stripe = inner.stripe(&inner.enrollment_stripes, id);
        inner.lookup(&inner.enrollments, "enrollment", id, stripe)
    }

    /// Stores the answer read under `ticket` (from the primary).
    pub fn fill_enrollment(&self, ticket: Ticket, value: CachedEnrollment) {
        let Some(inner) = &self.0 else { return };
        let weight = 200
            + value.message.len()
            + (value.person_id.len() + value.cohort_id.len() + value.organization_path.len())
                as u64;
        inner.fill(&inner.enrollments, ticket, value, weight);
    }

    /// Returns the cached ListProgress page of `cohort_id` under `key` (order, page, visibility),
    /// or the ticket to store the page read next. `Err(None)`: the cache does not apply.
    pub fn cohort_page(
        &self,
        cohort_id: &str,
        key: &str,
    ) -> Result<Arc<Encoded<pb::ListProgressResponse>>, Option<Ticket>> {
        let Some(inner) = self.usable("cohort_page") else {
            return Err(None);
        };
        let stripe = inner.stripe(&inner.cohort_stripes, cohort_id);
        let key = format!("{cohort_id}\u{1f}{key}");
        inner.lookup(&inner.pages, "cohort_page", &key, stripe)
    }

    /// Stores the page read under `ticket` (from the primary).
    pub fn fill_cohort_page(&self, ticket: Ticket, value: &pb::ListProgressResponse) {
        let Some(inner) = &self.0 else { return };
        let value = Encoded::new(value);
        let weight = 200 + value.len();
        inner.fill(&inner.pages, ticket, value, weight);
    }

    fn usable(&self, kind: &'static str) -> Option<&Inner> {
        let inner = self.0.as_ref()?;
        if !inner.live.load(Ordering::SeqCst) || super::replica::carries_position() {
            inner
                .requests
                .get_or_create(&CacheLabels {
                    kind,
                    result: "bypass",
                })
                .inc();
            return None;
        }
        Some(inner)
    }
}

impl Inner {
    fn stripe<'a>(&self, stripes: &'a [AtomicU64], key: &str) -> &'a AtomicU64 {
        &stripes[(self.hasher.hash_one(key) as usize) % stripes.len()]
    }

    fn lookup<T>(
        &self,
        map: &Map<T>,
        kind: &'static str,
        key: &str,
        stripe: &AtomicU64,
    ) -> Result<Arc<T>, Option<Ticket>> {
        // Counters first: a commit whose bump lands after this load invalidates what we read.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let stamp = stripe.load(Ordering::SeqCst);
        if let Some(entry) = map.get(key) {
            if entry.epoch == epoch && entry.stamp == stamp && entry.read_at.elapsed() < self.ttl {
                self.requests
                    .get_or_create(&CacheLabels {
                        kind,
                        result: "hit",
                    })
                    .inc();
                return Ok(entry.value);
            }
            map.remove(key);
        }
        self.requests
            .get_or_create(&CacheLabels {
                kind,
                result: "miss",
            })
            .inc();
        Err(Some(Ticket {
            key: key.to_owned(),
            epoch,
            stamp,
        }))
    }

    fn fill<T>(&self, map: &Map<T>, ticket: Ticket, value: T, weight: u64) {
        if !self.live.load(Ordering::SeqCst) || self.epoch.load(Ordering::SeqCst) != ticket.epoch {
            return;
        }
        map.insert(
            ticket.key,
            Entry {
                value: Arc::new(value),
                epoch: ticket.epoch,
                stamp: ticket.stamp,
                read_at: Instant::now(),
                weight,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(id: &str) -> CachedEnrollment {
        CachedEnrollment {
            message: Encoded::new(&pb::EnrollmentProgress {
                enrollment_id: id.to_owned(),
                ..Default::default()
            }),
            person_id: "p".into(),
            cohort_id: "c".into(),
            organization_path: "/o/".into(),
        }
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_never_served() {
        let cache = ProgressCache::new(1, Duration::from_secs(60), true);
        let ticket = cache.enrollment("e1").unwrap_err().unwrap();
        // A write commits while the read is in flight: its invalidation lands first.
        cache.invalidate(&Touched {
            enrollments: ["e1".to_owned()].into(),
            ..Default::default()
        });
        cache.fill_enrollment(ticket, cached("e1"));
        assert!(cache.enrollment("e1").is_err(), "a stale read was served");
        let ticket = cache.enrollment("e1").unwrap_err().unwrap();
        cache.fill_enrollment(ticket, cached("e1"));
        assert_eq!(
            cache
                .enrollment("e1")
                .unwrap()
                .message
                .decode()
                .enrollment_id,
            "e1"
        );
    }

    #[test]
    fn invalidations_and_flushes_drop_answers() {
        let cache = ProgressCache::new(1, Duration::from_secs(60), true);
        for id in ["e1", "e2"] {
            let ticket = cache.enrollment(id).unwrap_err().unwrap();
            cache.fill_enrollment(ticket, cached(id));
        }
        let ticket = cache.cohort_page("c1", "k").unwrap_err().unwrap();
        cache.fill_cohort_page(ticket, &pb::ListProgressResponse::default());
        assert!(cache.cohort_page("c1", "k").is_ok());
        cache.invalidate(&Touched::parse("e:e1,c:c1"));
        assert!(cache.enrollment("e1").is_err());
        assert!(cache.enrollment("e2").is_ok(), "e2 was not touched");
        assert!(cache.cohort_page("c1", "k").is_err());
        cache.invalidate(&Touched::parse("*"));
        assert!(cache.enrollment("e2").is_err());
    }

    #[test]
    fn a_dark_cache_serves_nothing_and_forgets_what_it_held() {
        let cache = ProgressCache::new(1, Duration::from_secs(60), false);
        assert!(matches!(cache.enrollment("e1"), Err(None)), "not live yet");
        cache.go_live();
        let ticket = cache.enrollment("e1").unwrap_err().unwrap();
        cache.go_dark();
        cache.fill_enrollment(ticket.clone(), cached("e1"));
        cache.go_live();
        cache.fill_enrollment(ticket, cached("e1"));
        assert!(
            cache.enrollment("e1").is_err(),
            "read before the listener reconnected"
        );
    }

    #[test]
    fn answers_expire() {
        let cache = ProgressCache::new(1, Duration::from_millis(1), true);
        let ticket = cache.enrollment("e1").unwrap_err().unwrap();
        cache.fill_enrollment(ticket, cached("e1"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.enrollment("e1").is_err());
    }

    #[test]
    fn payloads_stay_under_the_limit_and_read_back() {
        let touched = Touched {
            enrollments: (0..500).map(|n| format!("{n:036}")).collect(),
            cohorts: (0..20).map(|n| format!("c{n:035}")).collect(),
            everything: false,
        };
        let payloads = touched.payloads();
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= PAYLOAD_BYTES));
        let mut back = Touched::default();
        for payload in &payloads {
            let part = Touched::parse(payload);
            back.enrollments.extend(part.enrollments);
            back.cohorts.extend(part.cohorts);
        }
        assert_eq!(back, touched);
        let all = Touched {
            everything: true,
            ..touched
        };
        assert_eq!(all.payloads(), vec!["*".to_owned()]);
    }
}
