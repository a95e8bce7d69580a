//! Read replicas: hot standbys that serve reports, lists, exports and the feed backlog, with a
//! bounded staleness and read-your-writes for the caller who carries a commit position.
//!
//! The primary stays the only writer. A background task ([`Store::watch_read_replicas`]) samples
//! the primary's WAL position and each standby's replay position every [`POLL_INTERVAL`]. A
//! standby's staleness is the age of the newest primary sample it has replayed past: it holds
//! every transaction the primary had committed at that moment. A standby staler than the
//! configured maximum, or one that errors, is skipped until a later sample finds it fresh again;
//! with none usable, reads go to the primary. Staleness measured this way needs no clock shared
//! with the standby, and an idle primary never makes a caught-up standby look stale.
//!
//! Read-your-writes: a write call's response carries the primary's WAL position after its
//! commit (`lms-commit-lsn`); a read call that sends it back (`lms-min-lsn`) is served by a
//! standby only when that standby's last sampled replay position has reached it, otherwise by
//! the primary. The positions travel in request scope ([`ReadContext`]), set by the server's
//! layer (`src/server/read_position.rs`).

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, Statement,
};

/// How often the primary's and the standbys' WAL positions are sampled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A position in PostgreSQL's write-ahead log (`pg_lsn`), written `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition(pub u64);

impl FromStr for WalPosition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (high, low) = text
            .split_once('/')
            .ok_or_else(|| "must be a WAL position such as 16/B374D848".to_owned())?;
        let parse = |part: &str| {
            if part.is_empty() || part.len() > 8 {
                return Err("must be a WAL position such as 16/B374D848".to_owned());
            }
            u32::from_str_radix(part, 16)
                .map_err(|_| "must be a WAL position such as 16/B374D848".to_owned())
        };
        Ok(Self(
            (u64::from(parse(high)?) << 32) | u64::from(parse(low)?),
        ))
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

tokio::task_local! {
    /// The read requirements and the write mark of the call being served.
    static READ_CONTEXT: ReadContext;
}

/// What one call needs from the reads it makes, and whether it wrote.
#[derive(Debug, Clone, Default)]
pub struct ReadContext {
    /// The caller's last commit position: reads must see at least this much of the WAL.
    min_position: Option<WalPosition>,
    /// Set when a write transaction of the call committed.
    wrote: Arc<AtomicBool>,
}

impl ReadContext {
    /// Returns the context of a call that must read at least up to `min_position`.
    pub fn new(min_position: Option<WalPosition>) -> Self {
        Self {
            min_position,
            wrote: Arc::default(),
        }
    }

    /// Runs `work` with this context: the store's reads and writes inside it see it.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        READ_CONTEXT.scope(self, work).await
    }

    /// Returns true when a write transaction committed inside [`ReadContext::scope`].
    pub fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Acquire)
    }
}

/// Returns `work` running with the current call's read context (none outside a call): for
/// reads a call makes after it returned, such as the pages of a streamed export.
pub fn inherit<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let context = READ_CONTEXT.try_with(Clone::clone).ok();
    async move {
        match context {
            Some(context) => context.scope(work).await,
            None => work.await,
        }
    }
}

/// Marks the current call as having committed a write (no-op outside a call).
pub(crate) fn mark_written() {
    let _ = READ_CONTEXT.try_with(|context| context.wrote.store(true, Ordering::Release));
}

/// Returns true when the current call sent a commit position to read at least up to: it reads
/// the primary or a standby past it, never a cache.
pub(crate) fn carries_position() -> bool {
    required_position().is_some()
}

/// Returns the current call's minimum read position, if it sent one.
fn required_position() -> Option<WalPosition> {
    READ_CONTEXT
        .try_with(|context| context.min_position)
        .ok()
        .flatten()
}

/// Labels of the per-server read series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `primary`, or `standby-N` (N counts from 0 in `DATABASE_READ_URL` order).
    pub server: String,
}

/// Measurements of read routing; the metrics endpoint registers them.
#[derive(Debug, Default)]
pub struct ReplicaMetrics {
    /// Statements of routed reads, by the server that answered them.
    pub reads: Family<ServerLabels, Counter>,
    /// Each standby's staleness in milliseconds at the last sample (-1: unknown or failing).
    pub lag_milliseconds: Family<ServerLabels, Gauge>,
    /// 1 while a standby is used for reads, 0 while it is skipped.
    pub usable: Family<ServerLabels, Gauge>,
}

/// One hot standby and what the last sample found.
#[derive(Debug)]
struct Standby {
    name: String,
    db: DatabaseConnection,
    state: Mutex<StandbyState>,
}

#[derive(Debug, Clone, Copy, Default)]
struct StandbyState {
    /// Fresh enough to serve reads.
    usable: bool,
    /// Replay position at the last good sample.
    replayed: Option<WalPosition>,
}

impl Standby {
    fn state(&self) -> StandbyState {
        *self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn set_state(&self, state: StandbyState) {
        *self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = state;
    }

    /// Takes the standby out of service until the next good sample (a read on it failed).
    fn fail(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        state.usable = false;
    }
}

/// The standbys of one store and how fresh they are.
#[derive(Debug)]
pub(crate) struct ReadReplicas {
    standbys: Vec<Arc<Standby>>,
    max_lag: Duration,
    next: AtomicUsize,
    /// Recent primary positions, oldest first: `(when sampled, position)`.
    history: Mutex<VecDeque<(Instant, WalPosition)>>,
    metrics: Arc<ReplicaMetrics>,
}

/// Identity of a running PostgreSQL server: a read URL that reaches the primary itself (through
/// a pooler, say) is used as a standby with no lag; any other server not in recovery (a promoted
/// former standby) is not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerIdentity {
    system: i64,
    started: String,
}

impl ReadReplicas {
    /// Returns the standbys `connections` (named `standby-0`, `standby-1`, ..), none usable
    /// until their first sample.
    pub(crate) fn new(
        connections: Vec<DatabaseConnection>,
        max_lag: Duration,
        metrics: Arc<ReplicaMetrics>,
    ) -> Self {
        let standbys = connections
            .into_iter()
            .enumerate()
            .map(|(index, db)| {
                Arc::new(Standby {
                    name: format!("standby-{index}"),
                    db,
                    state: Mutex::default(),
                })
            })
            .collect();
        Self {
            standbys,
            max_lag,
            next: AtomicUsize::new(0),
            history: Mutex::default(),
            metrics,
        }
    }

    /// Returns a usable standby that has replayed `min_position` (round robin), if any.
    fn choose(&self, min_position: Option<WalPosition>) -> Option<Arc<Standby>> {
        let count = self.standbys.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.standbys[(start + offset) % count])
            .find(|standby| {
                let state = standby.state();
                state.usable
                    && min_position.is_none_or(|needed| {
                        state.replayed.is_some_and(|replayed| replayed >= needed)
                    })
            })
            .cloned()
    }

    /// Samples the primary, then every standby, and updates which standbys are usable.
    pub(crate) async fn sample(&self, primary: &DatabaseConnection) {
        let primary_sample = async {
            let position = current_position(primary).await?;
            let identity = identity(primary).await?;
            Ok::<_, DbErr>((position, identity))
        }
        .await;
        let (primary_position, primary_identity) = match primary_sample {
            Ok(sample) => sample,
            Err(error) => {
                // Without the primary's position no staleness is known: keep the last verdicts,
                // which age out as soon as the primary answers again.
                tracing::debug!(error = %error, "read replicas: the primary's position could not be sampled");
                return;
            }
        };
        let now = Instant::now();
        {
            let mut history = self
                .history
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            history.push_back((now, primary_position));
            let keep = self.max_lag + 4 * POLL_INTERVAL;
            while history
                .front()
                .is_some_and(|(when, _)| now.duration_since(*when) > keep)
            {
                history.pop_front();
            }
        }
        for standby in &self.standbys {
            self.sample_standby(standby, &primary_identity).await;
        }
    }

    async fn sample_standby(&self, standby: &Standby, primary_identity: &ServerIdentity) {
        let labels = ServerLabels {
            server: standby.name.clone(),
        };
        let replayed = match replay_position(&standby.db, primary_identity).await {
            Ok(replayed) => replayed,
            Err(reason) => {
                if standby.state().usable {
                    tracing::warn!(standby = %standby.name, reason = %reason, "read replica skipped");
                }
                standby.set_state(StandbyState {
                    usable: false,
                    replayed: None,
                });
                self.metrics.lag_milliseconds.get_or_create(&labels).set(-1);
                self.metrics.usable.get_or_create(&labels).set(0);
                return;
            }
        };
        let lag = self.staleness(replayed);
        let usable = lag.is_some_and(|lag| lag <= self.max_lag);
        let was_usable = standby.state().usable;
        if usable != was_usable {
            if usable {
                tracing::info!(standby = %standby.name, replayed = %replayed, "read replica in use");
            } else {
                tracing::warn!(
                    standby = %standby.name,
                    lag_ms = lag.map(|lag| lag.as_millis() as i64),
                    max_lag_ms = self.max_lag.as_millis() as i64,
                    "read replica lags; reads go elsewhere until it catches up"
                );
            }
        }
        standby.set_state(StandbyState {
            usable,
            replayed: Some(replayed),
        });
        self.metrics
            .lag_milliseconds
            .get_or_create(&labels)
            .set(lag.map_or(-1, |lag| lag.as_millis() as i64));
        self.metrics
            .usable
            .get_or_create(&labels)
            .set(i64::from(usable));
    }

    /// Returns how old the newest primary sample is that `replayed` covers: the standby holds
    /// everything committed up to then. `None` when it covers none of the kept samples.
    fn staleness(&self, replayed: WalPosition) -> Option<Duration> {
        let history = self
            .history
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        history
            .iter()
            .rev()
            .find(|(_, position)| *position <= replayed)
            .map(|(when, _)| when.elapsed())
    }
}

/// Returns the primary's WAL position now (everything committed so far lies below it).
pub(crate) async fn current_position(primary: &DatabaseConnection) -> Result<WalPosition, DbErr> {
    let row = primary
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_wal_lsn()::text AS position",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("pg_current_wal_lsn returned no row".to_owned()))?;
    let text: String = row.try_get("", "position")?;
    text.parse().map_err(DbErr::Custom)
}

async fn identity(db: &DatabaseConnection) -> Result<ServerIdentity, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT system_identifier AS system, pg_postmaster_start_time()::text AS started \
             FROM pg_control_system()",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("pg_control_system returned no row".to_owned()))?;
    Ok(ServerIdentity {
        system: row.try_get("", "system")?,
        started: row.try_get("", "started")?,
    })
}

/// Returns how far `standby` has replayed the primary's WAL, or why it cannot serve reads.
async fn replay_position(
    standby: &DatabaseConnection,
    primary_identity: &ServerIdentity,
) -> Result<WalPosition, String> {
    // `pg_current_wal_lsn()` fails during recovery: the CASE keeps one statement for both kinds.
    let row = standby
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS recovering, \
             CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text \
             ELSE pg_current_wal_lsn()::text END AS replayed",
        ))
        .await
        .map_err(|error| error.to_string())?
        .ok_or("no row")?;
    let recovering: bool = row
        .try_get("", "recovering")
        .map_err(|error| error.to_string())?;
    let replayed: Option<String> = row
        .try_get("", "replayed")
        .map_err(|error| error.to_string())?;
    if !recovering {
        let same = identity(standby).await.map_err(|error| error.to_string())?;
        if &same != primary_identity {
            return Err("not in recovery and not the primary (a promoted standby?)".to_owned());
        }
    }
    replayed
        .ok_or_else(|| "no WAL replayed yet".to_owned())?
        .parse()
}

/// The connection a routed read uses: a fresh enough standby when one is usable, the primary
/// otherwise. A statement that fails on the standby takes the standby out of service and runs
/// again on the primary, so a standby that goes away costs time, never an answer.
#[derive(Debug, Clone)]
pub struct Reader {
    primary: DatabaseConnection,
    standby: Option<Arc<Standby>>,
    metrics: Option<Arc<ReplicaMetrics>>,
}

impl Reader {
    /// Returns a reader for the current call: see the module documentation.
    pub(crate) fn for_call(primary: &DatabaseConnection, replicas: Option<&ReadReplicas>) -> Self {
        let standby = replicas.and_then(|replicas| replicas.choose(required_position()));
        Self {
            primary: primary.clone(),
            standby,
            metrics: replicas.map(|replicas| replicas.metrics.clone()),
        }
    }

    /// Returns the name of the server this reader starts on (`primary` or `standby-N`).
    pub fn server(&self) -> &str {
        self.standby
            .as_ref()
            .map_or("primary", |standby| standby.name.as_str())
    }

    /// Returns true when reads go to a standby.
    pub fn is_standby(&self) -> bool {
        self.standby.is_some()
    }

    fn count(&self, server: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .reads
                .get_or_create(&ServerLabels {
                    server: server.to_owned(),
                })
                .inc();
        }
    }

    /// Runs `run` on the standby, falling back to the primary if it fails there.
    async fn route<T, F, Fut>(&self, run: F) -> Result<T, DbErr>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        if let Some(standby) = &self.standby {
            match run(standby.db.clone()).await {
                Ok(value) => {
                    self.count(&standby.name);
                    return Ok(value);
                }
                Err(error) => {
                    tracing::warn!(standby = %standby.name, error = %error, "a read failed on a standby; reading from the primary");
                    standby.fail();
                }
            }
        }
        let value = run(self.primary.clone()).await?;
        self.count("primary");
        Ok(value)
    }
}

/// A boxed future of [`ConnectionTrait`], as `async_trait` spells it.
type DbFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 'a>>;

// Written out as `async_trait` expands it (the crate is not a dependency of ours).
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        self.primary.get_database_backend()
    }

    fn execute_raw<'life0, 'async_trait>(
        &'life0 self,
        statement: Statement,
    ) -> DbFuture<'async_trait, ExecResult>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.route(|db| {
                let statement = statement.clone();
                async move { db.execute_raw(statement).await }
            })
            .await
        })
    }

    fn execute_unprepared<'life0, 'life1, 'async_trait>(
        &'life0 self,
        sql: &'life1 str,
    ) -> DbFuture<'async_trait, ExecResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.route(|db| async move { db.execute_unprepared(sql).await })
                .await
        })
    }

    fn query_one_raw<'life0, 'async_trait>(
        &'life0 self,
        statement: Statement,
    ) -> DbFuture<'async_trait, Option<QueryResult>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.route(|db| {
                let statement = statement.clone();
                async move { db.query_one_raw(statement).await }
            })
            .await
        })
    }

    fn query_all_raw<'life0, 'async_trait>(
        &'life0 self,
        statement: Statement,
    ) -> DbFuture<'async_trait, Vec<QueryResult>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.route(|db| {
                let statement = statement.clone();
                async move { db.query_all_raw(statement).await }
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_positions_parse_and_print_as_postgresql_does() {
        let position: WalPosition = "16/B374D848".parse().unwrap();
        assert_eq!(position.0, (0x16 << 32) | 0xB374_D848);
        assert_eq!(position.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<WalPosition>().unwrap(), WalPosition(0));
        assert!("0/1D745B0".parse::<WalPosition>().unwrap() < "1/0".parse().unwrap());
        for bad in ["", "16", "/1", "1/", "x/1", "1/123456789", "1/2/3", " 1/2"] {
            assert!(bad.parse::<WalPosition>().is_err(), "{bad:?}");
        }
    }
}
