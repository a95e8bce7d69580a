//! `lms bench`: a load generator for a running server, written with the project's tonic clients.
//!
//! Each scenario runs `--concurrency` callers over `--connections` HTTP/2 connections for
//! `--duration` (or until `--count` calls), after `--warmup`. It prints a table and can write
//! JSON: throughput (calls and items per second), latency percentiles, errors by gRPC status
//! code, and the server's memory when given `--server-pid`. Every progress event carries a new
//! event id, except the `--replay` share which resends an earlier event of the same caller.
//!
//! `lms bench report` turns the JSON results written by `bench/run.sh` into BENCHMARKS.md.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, transport::Channel};

use super::{Authed, Bearer};
use crate::auth::{Role, token};
use crate::config::Config;
use crate::pb::{
    self, certification_service_client::CertificationServiceClient,
    organization_service_client::OrganizationServiceClient,
    person_service_client::PersonServiceClient, programme_service_client::ProgrammeServiceClient,
    progress_service_client::ProgressServiceClient,
};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// grpc.health.v1 Check: the floor of one RPC on this server.
    Health,
    /// RecordProgress: one event per call.
    RecordProgress,
    /// BatchRecordProgress: `--batch` events per call.
    RecordProgressBatch,
    /// StreamProgress: one stream per caller, one event in flight per stream.
    StreamProgress,
    /// GetEnrollmentProgress of a random enrolment.
    GetProgress,
    /// ListProgress of a random cohort (one page of 50).
    ListCohortProgress,
    /// Enroll existing people in fresh cohorts of a benchmark programme.
    Enroll,
    /// ImportPeople: `--count` records over `--concurrency` streams.
    ImportPeople,
    /// ReportService GetCompletionReport for the whole country grouped by ministry.
    CompletionReport,
    /// CertificationService GetCascadeReach of the seeded national master trainer, by ministry.
    CascadeReach,
    /// Baseline: single-row durable INSERT into a copy of the progress-event table, straight to the database.
    SqlInsert,
    /// Baseline: the two reads of one GetEnrollmentProgress (a random enrolment), straight to the database.
    SqlReadProgress,
    /// Baseline: the read of one ListProgress page of 50 (a random cohort), straight to the database.
    SqlReadList,
    /// Writes BENCHMARKS.md from the JSON results of `bench/run.sh` (see `--results`, `--out`).
    Report,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::RecordProgress => "record-progress",
            Self::RecordProgressBatch => "record-progress-batch",
            Self::StreamProgress => "stream-progress",
            Self::GetProgress => "get-progress",
            Self::ListCohortProgress => "list-cohort-progress",
            Self::Enroll => "enroll",
            Self::ImportPeople => "import-people",
            Self::CompletionReport => "completion-report",
            Self::CascadeReach => "cascade-reach",
            Self::SqlInsert => "sql-insert",
            Self::SqlReadProgress => "sql-read-progress",
            Self::SqlReadList => "sql-read-list",
            Self::Report => "report",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::RecordProgress | Self::RecordProgressBatch | Self::StreamProgress => "events",
            Self::ImportPeople | Self::SqlInsert => "rows",
            Self::Enroll => "enrolments",
            _ => "calls",
        }
    }
}

/// Where the events of one BatchRecordProgress call come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchScope {
    /// Learners of one cohort (a trainer's session, an app syncing one cohort).
    Cohort,
    /// Any loaded enrolment: the worst case for row locks.
    Random,
}

/// Arguments of `lms bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server address.
    #[arg(long, env = "LMS_BENCH_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Bearer token (admin); without it one is minted with the development key of `--data-dir`.
    #[arg(long, env = "LMS_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Callers (or streams) at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// HTTP/2 connections the callers share (default: one per 64 callers).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Measured time (after the warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Measured calls instead of a duration (import-people: records).
    #[arg(long)]
    pub count: Option<u64>,
    /// Unmeasured time before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Share (0-1) of progress events that resend an earlier event instead of a new one.
    #[arg(long, default_value_t = 0.0)]
    pub replay: f64,
    /// Events per BatchRecordProgress call.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Enrolments of one batch: of one random cohort, or random over all loaded enrolments.
    #[arg(long, value_enum, default_value = "cohort")]
    pub batch_scope: BatchScope,
    /// Code of the programme whose cohorts and enrolments the progress scenarios use.
    #[arg(long, default_value = super::seed::NATIONAL_PROGRAMME)]
    pub programme: String,
    /// Code of the certification track whose first certified trainer cascade-reach measures.
    #[arg(long, default_value = super::seed::NATIONAL_MASTER_TRACK)]
    pub master_track: String,
    /// Cohorts whose enrolments are loaded for the progress scenarios.
    #[arg(long, default_value_t = 200)]
    pub fixture_cohorts: usize,
    /// Prefix of the external ids import-people sends (the same prefix twice is a re-import).
    #[arg(long, default_value = "BENCH")]
    pub prefix: String,
    /// Pid of the server, to report its memory (VmRSS sampled during the run, VmHWM at the end).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also measure what each item costs over the measured window: CPU milliseconds of the server
    /// (`--server-pid`) and of the database's processes serving this database, bytes of WAL and
    /// of tables, and rows inserted per table (PostgreSQL's statistics; on SQLite, file bytes).
    /// Connects to the database of `DATABASE_URL` / `--database-url`.
    #[arg(long)]
    pub cost: bool,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit with an error unless some calls succeeded and none failed (for CI smoke runs).
    #[arg(long)]
    pub check: bool,
    /// Report: folder of results written by bench/run.sh.
    #[arg(long, default_value = "bench/results")]
    pub results: PathBuf,
    /// Report: file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
}

/// Runs `lms bench`.
pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Report => return report::write(&args.results, &args.out),
        Scenario::SqlInsert => {
            let result = sql_insert(&config, &args).await?;
            return finish(&args, result);
        }
        Scenario::SqlReadProgress | Scenario::SqlReadList => {
            let result = sql_read(&config, &args).await?;
            return finish(&args, result);
        }
        _ => {}
    }
    let token = match &args.token {
        Some(token) => token.clone(),
        None => token::sign_dev_token(
            &config.auth,
            &config.data_dir,
            &token::TokenRequest {
                subject: "lms-bench".to_owned(),
                roles: vec![Role::Admin],
                organization_id: None,
                ttl: Duration::from_secs(6 * 3600),
            },
        )?,
    };
    let bearer = Bearer::new(&token)?;
    let connections = args
        .connections
        .unwrap_or_else(|| args.concurrency.div_ceil(64))
        .max(1);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(args.addr.clone())?
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.addr))?,
        );
    }
    let fixture = Arc::new(Fixture::load(&args, &channels[0], &bearer).await?);
    let result = match args.scenario {
        Scenario::ImportPeople => import_people(&args, &channels, &bearer, &fixture).await?,
        Scenario::CompletionReport => {
            match completion_probe(&channels[0], &bearer, &fixture).await {
                Some(reason) => skipped(&args, &reason),
                None => {
                    let mut result =
                        drive(&config, &args, &channels, &bearer, fixture.clone()).await?;
                    result["report"] = completion_figures(&channels[0], &bearer, &fixture).await?;
                    result
                }
            }
        }
        Scenario::CascadeReach => {
            let mut result = drive(&config, &args, &channels, &bearer, fixture.clone()).await?;
            result["reach"] = reach_figures(&channels[0], &bearer, &fixture).await?;
            result
        }
        _ => drive(&config, &args, &channels, &bearer, fixture.clone()).await?,
    };
    finish(&args, result)
}

fn finish(args: &BenchArgs, result: Value) -> anyhow::Result<()> {
    print_table(&result);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.check && !result["skipped"].as_bool().unwrap_or(false) {
        let errors = result["errors_total"].as_u64().unwrap_or(0);
        let ok = result["ok"].as_u64().unwrap_or(0);
        if errors > 0 || ok == 0 {
            bail!(
                "check failed for {}: {ok} calls succeeded, {errors} failed",
                args.scenario.name()
            );
        }
        if let Some(expected) = result["expected_rows"].as_u64() {
            let applied = result["rows_applied"].as_u64().unwrap_or(0);
            if applied != expected {
                bail!("check failed: {applied} of {expected} records applied");
            }
        }
    }
    Ok(())
}

fn skipped(args: &BenchArgs, reason: &str) -> Value {
    eprintln!("{}: skipped: {reason}", args.scenario.name());
    json!({
        "scenario": args.scenario.name(),
        "skipped": true,
        "reason": reason,
        "concurrency": args.concurrency,
    })
}

/// What the scenarios call with: enrolments, cohorts and activities of the benchmark programme.
#[derive(Debug, Default)]
struct Fixture {
    programme_id: String,
    course_version_ids: Vec<String>,
    enrollments: Vec<String>,
    /// Enrolments of each cohort of `cohorts`, same order.
    cohort_enrollments: Vec<Vec<String>>,
    cohorts: Vec<String>,
    activities: Vec<String>,
    root_organizations: Vec<String>,
    /// Person id of the master trainer whose cascade reach is measured.
    master: String,
}

impl Fixture {
    async fn load(args: &BenchArgs, channel: &Channel, bearer: &Bearer) -> anyhow::Result<Self> {
        let needs_progress = matches!(
            args.scenario,
            Scenario::RecordProgress
                | Scenario::RecordProgressBatch
                | Scenario::StreamProgress
                | Scenario::GetProgress
                | Scenario::ListCohortProgress
                | Scenario::Enroll
                | Scenario::CompletionReport
        );
        let mut fixture = Self::default();
        if args.scenario == Scenario::CascadeReach {
            fixture.master = find_master(args, channel, bearer).await?;
            eprintln!(
                "fixture: master trainer {} (first holder of track {})",
                fixture.master, args.master_track
            );
            return Ok(fixture);
        }
        if !needs_progress {
            return Ok(fixture);
        }
        let mut programmes =
            ProgrammeServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(64 << 20);
        let mut page_token = String::new();
        let programme = loop {
            let page = programmes
                .list_programmes(pb::ListProgrammesRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .context("listing programmes")?
                .into_inner();
            if let Some(found) = page.programmes.iter().find(|p| p.code == args.programme) {
                break found.clone();
            }
            if page.next_page_token.is_empty() {
                bail!(
                    "programme {} not found; seed first (lms seed --profile national)",
                    args.programme
                );
            }
            page_token = page.next_page_token;
        };
        fixture.programme_id = programme.id.clone();
        fixture.course_version_ids = programme
            .phases
            .iter()
            .flat_map(|phase| phase.course_version_ids.iter().cloned())
            .collect();
        let mut page_token = String::new();
        while fixture.cohorts.len() < args.fixture_cohorts {
            let page = programmes
                .list_cohorts(pb::ListCohortsRequest {
                    page_size: 1000,
                    page_token,
                    programme_id: programme.id.clone(),
                    ..Default::default()
                })
                .await
                .context("listing cohorts")?
                .into_inner();
            fixture.cohorts.extend(
                page.cohorts
                    .iter()
                    .filter(|cohort| cohort.enrolled_count > 0)
                    .map(|cohort| cohort.id.clone()),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        fixture.cohorts.truncate(args.fixture_cohorts.max(1));
        for cohort in &fixture.cohorts {
            let before = fixture.enrollments.len();
            let mut page_token = String::new();
            loop {
                let page = programmes
                    .list_enrollments(pb::ListEnrollmentsRequest {
                        page_size: 1000,
                        page_token,
                        cohort_id: cohort.clone(),
                        ..Default::default()
                    })
                    .await
                    .context("listing enrolments")?
                    .into_inner();
                fixture.enrollments.extend(
                    page.enrollments
                        .iter()
                        .filter(|enrollment| {
                            !matches!(
                                enrollment.state(),
                                pb::EnrollmentState::Withdrawn | pb::EnrollmentState::Waitlisted
                            )
                        })
                        .map(|enrollment| enrollment.id.clone()),
                );
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            fixture
                .cohort_enrollments
                .push(fixture.enrollments[before..].to_vec());
        }
        let mut courses = pb::course_service_client::CourseServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
        if let Some(version_id) = fixture.course_version_ids.first() {
            let version = courses
                .get_course_version(pb::GetCourseVersionRequest {
                    id: version_id.clone(),
                })
                .await
                .context("reading the course version")?
                .into_inner();
            fixture.activities = version
                .modules
                .iter()
                .flat_map(|module| module.activities.iter())
                .filter(|activity| {
                    activity.kind() != pb::ActivityKind::Assessment && !activity.requires_sign_off
                })
                .map(|activity| activity.id.clone())
                .collect();
        }
        let mut organizations =
            OrganizationServiceClient::with_interceptor(channel.clone(), bearer.clone());
        let roots = organizations
            .list_organizations(pb::ListOrganizationsRequest {
                page_size: 1000,
                roots_only: true,
                kind: pb::OrganizationKind::Ministry.into(),
                ..Default::default()
            })
            .await
            .context("listing ministries")?
            .into_inner();
        fixture.root_organizations = roots.organizations.into_iter().map(|o| o.id).collect();
        if fixture.enrollments.is_empty() || fixture.activities.is_empty() {
            bail!(
                "programme {} has no enrolments or activities to record progress on",
                args.programme
            );
        }
        eprintln!(
            "fixture: {} cohorts, {} enrolments, {} activities of programme {}",
            fixture.cohorts.len(),
            fixture.enrollments.len(),
            fixture.activities.len(),
            args.programme
        );
        Ok(fixture)
    }
}

/// What one caller measured.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    items: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.items += other.items;
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
    }
}

/// Per-caller state: clients, a generator, and recent events for replays.
struct Caller {
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    progress: ProgressServiceClient<Authed>,
    programmes: ProgrammeServiceClient<Authed>,
    certification: CertificationServiceClient<Authed>,
    raw: tonic::client::Grpc<Authed>,
    rng: StdRng,
    sent: Vec<pb::ProgressEvent>,
    stream: Option<(
        mpsc::Sender<pb::ProgressEvent>,
        tonic::Streaming<pb::ProgressAck>,
    )>,
}

/// The shared state of an `enroll` run: cohorts to fill and a feed of people.
struct EnrollFeed {
    cohorts: Vec<String>,
    people: Mutex<mpsc::Receiver<String>>,
    next: AtomicU64,
}

impl Caller {
    fn event(&mut self, fixture: &Fixture, replay: f64) -> pb::ProgressEvent {
        self.event_among(&fixture.enrollments, fixture, replay)
    }

    /// Returns a new event on one of `enrollments` (or, for the `replay` share, an earlier one).
    fn event_among(
        &mut self,
        enrollments: &[String],
        fixture: &Fixture,
        replay: f64,
    ) -> pb::ProgressEvent {
        if !self.sent.is_empty() && replay > 0.0 && self.rng.random::<f64>() < replay {
            let index = self.rng.random_range(0..self.sent.len());
            return self.sent[index].clone();
        }
        let enrollment = &enrollments[self.rng.random_range(0..enrollments.len())];
        let activity = &fixture.activities[self.rng.random_range(0..fixture.activities.len())];
        let now = chrono::Utc::now() - chrono::Duration::seconds(self.rng.random_range(0..3600));
        let verb = if self.rng.random::<f64>() < 0.3 {
            pb::ProgressVerb::Completed
        } else {
            pb::ProgressVerb::Progressed
        };
        let event = pb::ProgressEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            enrollment_id: enrollment.clone(),
            activity_id: activity.clone(),
            verb: verb.into(),
            score: None,
            duration_seconds: self.rng.random_range(30..1800),
            occurred_time: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: 0,
            }),
            source: pb::ProgressSource::App.into(),
            ..Default::default()
        };
        if self.sent.len() < 256 {
            self.sent.push(event.clone());
        } else {
            let slot = self.rng.random_range(0..self.sent.len());
            self.sent[slot] = event.clone();
        }
        event
    }

    /// Makes one call; returns the items it covered, or the status code name of its failure.
    async fn call(
        &mut self,
        scenario: Scenario,
        args: &BenchArgs,
        fixture: &Fixture,
        feed: Option<&EnrollFeed>,
    ) -> Result<u64, String> {
        let code = |status: tonic::Status| format!("{:?}", status.code());
        match scenario {
            Scenario::Health => {
                self.health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map_err(code)?;
                Ok(1)
            }
            Scenario::RecordProgress => {
                let event = self.event(fixture, args.replay);
                self.progress
                    .record_progress(pb::RecordProgressRequest { event: Some(event) })
                    .await
                    .map_err(code)?;
                Ok(1)
            }
            Scenario::RecordProgressBatch => {
                // A batch is what one trainer or app sends: events of one cohort's learners
                // (`--batch-scope random` spreads them over every loaded enrolment instead).
                let scope: &[String] = if args.batch_scope == BatchScope::Cohort {
                    let cohort = self.rng.random_range(0..fixture.cohort_enrollments.len());
                    &fixture.cohort_enrollments[cohort]
                } else {
                    &fixture.enrollments
                };
                let scope = if scope.is_empty() {
                    &fixture.enrollments
                } else {
                    scope
                };
                let events: Vec<pb::ProgressEvent> = (0..args.batch.max(1))
                    .map(|_| self.event_among(scope, fixture, args.replay))
                    .collect();
                let response = self
                    .progress
                    .batch_record_progress(pb::BatchRecordProgressRequest { events })
                    .await
                    .map_err(code)?
                    .into_inner();
                if let Some(error) = response.acks.iter().find_map(|ack| ack.error.as_ref()) {
                    return Err(format!("EventRefused({})", error.reason));
                }
                Ok(response.acks.len() as u64)
            }
            Scenario::StreamProgress => {
                let event = self.event(fixture, args.replay);
                let Some((sender, acks)) = self.stream.as_mut() else {
                    return Err("NoStream".to_owned());
                };
                sender
                    .send(event)
                    .await
                    .map_err(|_| "StreamClosed".to_owned())?;
                match acks.message().await {
                    Ok(Some(ack)) => match ack.error {
                        Some(error) => Err(format!("EventRefused({})", error.reason)),
                        None => Ok(1),
                    },
                    Ok(None) => Err("StreamEnded".to_owned()),
                    Err(status) => Err(code(status)),
                }
            }
            Scenario::GetProgress => {
                let enrollment = fixture.enrollments
                    [self.rng.random_range(0..fixture.enrollments.len())]
                .clone();
                self.progress
                    .get_enrollment_progress(pb::GetEnrollmentProgressRequest {
                        enrollment_id: enrollment,
                    })
                    .await
                    .map_err(code)?;
                Ok(1)
            }
            Scenario::ListCohortProgress => {
                let cohort =
                    fixture.cohorts[self.rng.random_range(0..fixture.cohorts.len())].clone();
                self.progress
                    .list_progress(pb::ListProgressRequest {
                        page_size: 50,
                        cohort_id: cohort,
                        ..Default::default()
                    })
                    .await
                    .map_err(code)?;
                Ok(1)
            }
            Scenario::Enroll => {
                let Some(feed) = feed else {
                    return Err("NoFeed".to_owned());
                };
                let person = feed
                    .people
                    .lock()
                    .await
                    .recv()
                    .await
                    .ok_or_else(|| "OutOfPeople".to_owned())?;
                let index = feed.next.fetch_add(1, Ordering::Relaxed) as usize;
                let cohort = feed.cohorts[index % feed.cohorts.len()].clone();
                self.programmes
                    .enroll(pb::EnrollRequest {
                        cohort_id: cohort,
                        person_id: person,
                        request_id: String::new(),
                    })
                    .await
                    .map_err(code)?;
                Ok(1)
            }
            Scenario::CompletionReport => {
                report_call(&mut self.raw, fixture).await.map_err(code)?;
                Ok(1)
            }
            Scenario::CascadeReach => {
                self.certification
                    .get_cascade_reach(pb::GetCascadeReachRequest {
                        person_id: fixture.master.clone(),
                        organization_level: 1,
                    })
                    .await
                    .map_err(code)?;
                Ok(1)
            }
            Scenario::ImportPeople
            | Scenario::SqlInsert
            | Scenario::SqlReadProgress
            | Scenario::SqlReadList
            | Scenario::Report => Err("NotACallScenario".to_owned()),
        }
    }
}

/// Runs the callers of a call-by-call scenario and returns its result.
async fn drive(
    config: &Config,
    args: &BenchArgs,
    channels: &[Channel],
    bearer: &Bearer,
    fixture: Arc<Fixture>,
) -> anyhow::Result<Value> {
    let scenario = args.scenario;
    let feed = if scenario == Scenario::Enroll {
        Some(Arc::new(enroll_feed(channels, bearer, &fixture).await?))
    } else {
        None
    };
    let mut callers = Vec::with_capacity(args.concurrency);
    let opening = Instant::now();
    for index in 0..args.concurrency.max(1) {
        let channel = channels[index % channels.len()].clone();
        let mut caller = Caller {
            health: tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            progress: ProgressServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            programmes: ProgrammeServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            certification: CertificationServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            raw: tonic::client::Grpc::new(tonic::service::interceptor::InterceptedService::new(
                channel.clone(),
                bearer.clone(),
            )),
            rng: StdRng::seed_from_u64(rand::random::<u64>() ^ index as u64),
            sent: Vec::new(),
            stream: None,
        };
        if scenario == Scenario::StreamProgress {
            let (sender, receiver) = mpsc::channel::<pb::ProgressEvent>(4);
            let acks = caller
                .progress
                .stream_progress(ReceiverStream::new(receiver))
                .await
                .with_context(|| format!("opening stream {index}"))?
                .into_inner();
            caller.stream = Some((sender, acks));
        }
        callers.push(caller);
    }
    if scenario == Scenario::StreamProgress {
        eprintln!(
            "{} streams open in {:.1} s",
            callers.len(),
            opening.elapsed().as_secs_f64()
        );
    }
    let measuring = Arc::new(AtomicBool::new(args.warmup.is_zero()));
    let stop = Arc::new(AtomicBool::new(false));
    let claimed = Arc::new(AtomicU64::new(0));
    let args = Arc::new(args.clone());
    let mut tasks = Vec::with_capacity(callers.len());
    for mut caller in callers {
        let (measuring, stop, claimed, args, fixture, feed) = (
            measuring.clone(),
            stop.clone(),
            claimed.clone(),
            args.clone(),
            fixture.clone(),
            feed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let measured = measuring.load(Ordering::Relaxed);
                if measured
                    && let Some(count) = args.count
                    && claimed.fetch_add(1, Ordering::Relaxed) >= count
                {
                    break;
                }
                let started = Instant::now();
                let outcome = caller
                    .call(scenario, &args, &fixture, feed.as_deref())
                    .await;
                if let Err(code) = &outcome {
                    // A stream that failed is gone: its caller stops, and the loss is counted
                    // even in the warm-up (a silent loss would shrink the concurrency measured).
                    if scenario == Scenario::StreamProgress {
                        *tally.errors.entry(code.clone()).or_default() += 1;
                        break;
                    }
                    // A call that fails at once must not keep this worker from the timer that
                    // ends the run.
                    tokio::task::yield_now().await;
                }
                if !measured || !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match outcome {
                    Ok(items) => {
                        tally
                            .latencies_us
                            .push(started.elapsed().as_micros() as u64);
                        tally.ok += 1;
                        tally.items += items;
                    }
                    Err(code) if code == "OutOfPeople" => break,
                    Err(code) => *tally.errors.entry(code).or_default() += 1,
                }
            }
            // Close the stream cleanly: the server sees the end of the requests.
            drop(caller);
            tally
        }));
    }
    let memory = args.server_pid.map(RssSampler::start);
    let cost_probe = if args.cost {
        Some(cost::Probe::connect(config).await?)
    } else {
        None
    };
    tokio::time::sleep(args.warmup).await;
    let cost_before = match &cost_probe {
        Some(probe) => Some(probe.sample(args.server_pid).await?),
        None => None,
    };
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    if args.count.is_none() {
        tokio::time::sleep(args.duration).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("caller task")?);
    }
    let elapsed = started.elapsed();
    let memory = match memory {
        Some(sampler) => Some(sampler.stop().await),
        None => None,
    };
    let extra = match (&cost_probe, cost_before) {
        (Some(probe), Some(before)) => {
            let after = probe.settled_sample(args.server_pid).await?;
            json!({ "cost": cost::per_item(&before, &after, tally.items) })
        }
        _ => json!({}),
    };
    Ok(result_json(
        &args,
        tally,
        elapsed,
        channels.len(),
        memory,
        extra,
    ))
}

/// Makes a fresh benchmark programme with cohorts and a feed of every person's id, for `enroll`.
async fn enroll_feed(
    channels: &[Channel],
    bearer: &Bearer,
    fixture: &Fixture,
) -> anyhow::Result<EnrollFeed> {
    let mut programmes =
        ProgrammeServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let sponsor = fixture
        .root_organizations
        .first()
        .cloned()
        .context("no ministry to sponsor the benchmark programme")?;
    let programme = programmes
        .create_programme(pb::CreateProgrammeRequest {
            programme: Some(pb::Programme {
                code: format!("BENCH-{}", &run[..12]),
                title: "Enrolment benchmark".to_owned(),
                sponsor_organization_id: sponsor,
                phases: vec![pb::Phase {
                    title: "Only phase".to_owned(),
                    course_version_ids: fixture.course_version_ids.clone(),
                    location: "Online".to_owned(),
                    planned_duration_days: 30,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .context("creating the benchmark programme")?
        .into_inner();
    let mut cohorts = Vec::new();
    for number in 0..16 {
        let cohort = programmes
            .create_cohort(pb::CreateCohortRequest {
                cohort: Some(pb::Cohort {
                    programme_id: programme.id.clone(),
                    name: format!("Benchmark cohort {number}"),
                    capacity: crate::domain::programme::MAX_CAPACITY,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .context("creating a benchmark cohort")?
            .into_inner();
        programmes
            .change_cohort_state(pb::ChangeCohortStateRequest {
                id: cohort.id.clone(),
                state: pb::CohortState::Open.into(),
                etag: String::new(),
            })
            .await
            .context("opening a benchmark cohort")?;
        cohorts.push(cohort.id);
    }
    let (sender, receiver) = mpsc::channel::<String>(20_000);
    let people = PersonServiceClient::with_interceptor(channels[0].clone(), bearer.clone())
        .max_decoding_message_size(64 << 20);
    tokio::spawn(async move {
        let mut people = people;
        let mut page_token = String::new();
        loop {
            let Ok(page) = people
                .list_people(pb::ListPeopleRequest {
                    page_size: 1000,
                    page_token,
                    status: pb::PersonStatus::Active.into(),
                    ..Default::default()
                })
                .await
            else {
                return;
            };
            let page = page.into_inner();
            for person in page.people {
                if sender.send(person.id).await.is_err() {
                    return;
                }
            }
            if page.next_page_token.is_empty() {
                return;
            }
            page_token = page.next_page_token;
        }
    });
    Ok(EnrollFeed {
        cohorts,
        people: Mutex::new(receiver),
        next: AtomicU64::new(0),
    })
}

/// Imports `--count` records over `--concurrency` ImportPeople streams into the units of the tree.
async fn import_people(
    args: &BenchArgs,
    channels: &[Channel],
    bearer: &Bearer,
    _fixture: &Fixture,
) -> anyhow::Result<Value> {
    let count = args.count.unwrap_or(10_000) as usize;
    let mut organizations =
        OrganizationServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
    let mut codes = Vec::new();
    for kind in [
        pb::OrganizationKind::Unit,
        pb::OrganizationKind::Department,
        pb::OrganizationKind::Ministry,
    ] {
        let mut page_token = String::new();
        loop {
            let page = organizations
                .list_organizations(pb::ListOrganizationsRequest {
                    page_size: 1000,
                    page_token,
                    kind: kind.into(),
                    ..Default::default()
                })
                .await
                .context("listing organisations")?
                .into_inner();
            codes.extend(
                page.organizations
                    .into_iter()
                    .map(|organization| organization.external_code)
                    .filter(|code| !code.is_empty()),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        if !codes.is_empty() {
            break;
        }
    }
    codes.sort();
    if codes.is_empty() {
        bail!("no organisation with an external code to import people into; seed first");
    }
    let streams = args.concurrency.max(1);
    let per_stream = count.div_ceil(streams);
    let codes = Arc::new(codes);
    let memory = args.server_pid.map(RssSampler::start);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for stream_index in 0..streams {
        let first = stream_index * per_stream;
        let last = ((stream_index + 1) * per_stream).min(count);
        if first >= last {
            break;
        }
        let mut client = PersonServiceClient::with_interceptor(
            channels[stream_index % channels.len()].clone(),
            bearer.clone(),
        );
        let codes = codes.clone();
        let prefix = args.prefix.clone();
        tasks.push(tokio::spawn(async move {
            let records = (first..last).map(move |index| {
                let code = &codes[index % codes.len()];
                pb::ImportPeopleRequest {
                    message: Some(pb::import_people_request::Message::Person(
                        super::seed::person_record(
                            7,
                            &format!("{prefix}-{index:07}"),
                            code,
                            pb::Sector::Public,
                        ),
                    )),
                }
            });
            let commit = pb::ImportPeopleRequest {
                message: Some(pb::import_people_request::Message::Commit(
                    pb::ImportCommit {
                        record_count: (last - first) as i64,
                    },
                )),
            };
            let stream = futures::stream::iter(records.chain(std::iter::once(commit)));
            let call_started = Instant::now();
            let outcome = client.import_people(stream).await;
            (
                call_started.elapsed(),
                outcome.map(tonic::Response::into_inner),
                last - first,
            )
        }));
    }
    let mut tally = Tally::default();
    let mut counts = pb::UpsertCounts::default();
    for task in tasks {
        let (latency, outcome, records) = task.await.context("import task")?;
        match outcome {
            Ok(response) => {
                tally.ok += 1;
                tally.items += records as u64;
                tally.latencies_us.push(latency.as_micros() as u64);
                let part = response.counts.unwrap_or_default();
                counts.created += part.created;
                counts.updated += part.updated;
                counts.unchanged += part.unchanged;
                counts.failed += part.failed;
            }
            Err(status) => {
                *tally
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1
            }
        }
    }
    let elapsed = started.elapsed();
    let memory = match memory {
        Some(sampler) => Some(sampler.stop().await),
        None => None,
    };
    if counts.failed > 0 {
        *tally.errors.entry("RecordRefused".to_owned()).or_default() += counts.failed as u64;
    }
    let extra = json!({
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "failed": counts.failed,
        "expected_rows": count,
        "rows_applied": counts.created + counts.updated + counts.unchanged,
        "prefix": args.prefix,
    });
    Ok(result_json(
        args,
        tally,
        elapsed,
        channels.len(),
        memory,
        extra,
    ))
}

/// Method of issue 6's completion report.
const COMPLETION_REPORT_PATH: &str = "/lms.v1.ReportService/GetCompletionReport";

/// Request of `GetCompletionReport` (report_service.proto of issue 6), by field number, so this
/// tool builds whether or not ReportService is compiled in; the answer is decoded as an empty
/// message (its fields are skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct CompletionReportRequest {
    /// The programme.
    #[prost(string, tag = "1")]
    programme_id: String,
    /// Grouping: 1 is REPORT_GROUPING_CHILD_ORGANIZATIONS (ministries, for the whole country).
    #[prost(int32, tag = "3")]
    group_by: i32,
}

/// Any answer: its content is not needed, only that it arrived.
#[derive(Clone, PartialEq, prost::Message)]
struct AnyMessage {}

async fn report_call(
    grpc: &mut tonic::client::Grpc<Authed>,
    fixture: &Fixture,
) -> Result<(), tonic::Status> {
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let codec = tonic_prost::ProstCodec::<CompletionReportRequest, AnyMessage>::default();
    let path = http::uri::PathAndQuery::from_static(COMPLETION_REPORT_PATH);
    grpc.unary(
        tonic::Request::new(CompletionReportRequest {
            programme_id: fixture.programme_id.clone(),
            group_by: 1,
        }),
        path,
        codec,
    )
    .await
    .map(|_| ())
}

/// Returns why the completion report cannot be measured on this server, if it cannot.
async fn completion_probe(channel: &Channel, bearer: &Bearer, fixture: &Fixture) -> Option<String> {
    let mut grpc = tonic::client::Grpc::new(tonic::service::interceptor::InterceptedService::new(
        channel.clone(),
        bearer.clone(),
    ));
    match report_call(&mut grpc, fixture).await {
        Ok(()) => None,
        Err(status)
            if status.code() == Code::Unimplemented
                || (status.code() == Code::PermissionDenied
                    && status.message().starts_with("no caller may call")) =>
        {
            Some(format!(
                "{COMPLETION_REPORT_PATH} is not served here (answered {:?}: ReportService of issue 6 not built in)",
                status.code()
            ))
        }
        Err(status) => Some(format!(
            "{COMPLETION_REPORT_PATH} answered {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// Returns the person id of the first holder of an active certificate of `--master-track`.
async fn find_master(
    args: &BenchArgs,
    channel: &Channel,
    bearer: &Bearer,
) -> anyhow::Result<String> {
    let mut client = CertificationServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut page_token = String::new();
    let track = loop {
        let page = client
            .list_certification_tracks(pb::ListCertificationTracksRequest {
                page_size: 1000,
                page_token,
            })
            .await
            .context("listing certification tracks")?
            .into_inner();
        if let Some(found) = page
            .tracks
            .into_iter()
            .find(|track| track.code == args.master_track)
        {
            break found;
        }
        if page.next_page_token.is_empty() {
            bail!(
                "certification track {} not found; seed first (lms seed --profile national)",
                args.master_track
            );
        }
        page_token = page.next_page_token;
    };
    let trainers = client
        .list_certified_trainers(pb::ListCertifiedTrainersRequest {
            track_id: track.id,
            page_size: 1,
            ..Default::default()
        })
        .await
        .context("listing certified trainers")?
        .into_inner();
    trainers
        .trainers
        .into_iter()
        .next()
        .map(|trainer| trainer.person_id)
        .with_context(|| format!("nobody holds a certificate of track {}", args.master_track))
}

/// One more GetCascadeReach after the measured ones: what it answered, for the JSON result and
/// for bench/run.sh's check against a direct count over `cascade_lineage`.
async fn reach_figures(
    channel: &Channel,
    bearer: &Bearer,
    fixture: &Fixture,
) -> anyhow::Result<Value> {
    let reach = CertificationServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .get_cascade_reach(pb::GetCascadeReachRequest {
            person_id: fixture.master.clone(),
            organization_level: 1,
        })
        .await
        .context("GetCascadeReach")?
        .into_inner();
    let levels: Vec<Value> = reach
        .levels
        .iter()
        .map(|level| {
            json!({"depth": level.depth, "people": level.people, "certified_trainers": level.certified_trainers})
        })
        .collect();
    let organizations: Vec<Value> = reach
        .organizations
        .iter()
        .map(|row| {
            json!({"organization_id": row.organization_id, "name": row.name, "people": row.people, "certified_trainers": row.certified_trainers})
        })
        .collect();
    println!(
        "  reach of {}: {} people, {} certified trainers, {} levels, {} ministries",
        fixture.master,
        reach.total_people,
        reach.total_certified_trainers,
        levels.len(),
        organizations.len()
    );
    Ok(json!({
        "person_id": fixture.master,
        "total_people": reach.total_people,
        "total_certified_trainers": reach.total_certified_trainers,
        "levels": levels,
        "organizations": organizations,
    }))
}

/// One more GetCompletionReport after the measured ones: its rows and total, for the JSON result
/// and for bench/run.sh's check against a direct count over enrolments.
async fn completion_figures(
    channel: &Channel,
    bearer: &Bearer,
    fixture: &Fixture,
) -> anyhow::Result<Value> {
    let report = pb::report_service_client::ReportServiceClient::with_interceptor(
        channel.clone(),
        bearer.clone(),
    )
    .max_decoding_message_size(64 << 20)
    .get_completion_report(pb::GetCompletionReportRequest {
        programme_id: fixture.programme_id.clone(),
        organization_id: String::new(),
        group_by: pb::ReportGrouping::ChildOrganizations.into(),
        course_id: String::new(),
    })
    .await
    .context("GetCompletionReport")?
    .into_inner();
    let row = |row: &pb::CompletionReportRow| {
        json!({
            "key": row.key,
            "name": row.name,
            "enrolled": row.enrolled,
            "in_progress": row.in_progress,
            "completed": row.completed,
            "withdrawn": row.withdrawn,
            "waitlisted": row.waitlisted,
        })
    };
    let total = report.total.as_ref().map(row).unwrap_or(Value::Null);
    println!(
        "  report total: enrolled {} in progress {} completed {} withdrawn {} waitlisted {} ({} rows)",
        total["enrolled"],
        total["in_progress"],
        total["completed"],
        total["withdrawn"],
        total["waitlisted"],
        report.rows.len()
    );
    Ok(json!({
        "programme_id": fixture.programme_id,
        "total": total,
        "rows": report.rows.iter().map(row).collect::<Vec<_>>(),
    }))
}

/// What items cost: CPU, bytes and rows per item over a measured window, from the operating
/// system's per-process CPU times and the database's own counters.
mod cost {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use anyhow::Context as _;
    use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};
    use serde_json::{Value, json};

    use crate::config::Config;

    /// One reading.
    #[derive(Debug, Clone, Default)]
    pub(super) struct Sample {
        server_cpu_ms: Option<f64>,
        database_cpu_ms: Option<f64>,
        wal_bytes: Option<i64>,
        database_bytes: i64,
        tables: BTreeMap<String, (i64, i64)>,
    }

    /// A connection to the measured database.
    pub(super) struct Probe {
        connection: DatabaseConnection,
        sqlite_path: Option<std::path::PathBuf>,
    }

    impl Probe {
        pub(super) async fn connect(config: &Config) -> anyhow::Result<Self> {
            let url = config.database_url();
            let connection = sea_orm::Database::connect(url.as_str())
                .await
                .context("connecting to the database for --cost")?;
            let sqlite_path = url
                .strip_prefix("sqlite://")
                .map(|rest| std::path::PathBuf::from(rest.split('?').next().unwrap_or_default()));
            Ok(Self {
                connection,
                sqlite_path,
            })
        }

        /// Reads after the load stopped. CPU, WAL and bytes are read at once; the rows inserted
        /// wait until PostgreSQL's backends have flushed their table statistics (an idle backend
        /// flushes within 10 s, PGSTAT_IDLE_INTERVAL): after 11 s, until two readings a second
        /// apart agree.
        pub(super) async fn settled_sample(
            &self,
            server_pid: Option<u32>,
        ) -> anyhow::Result<Sample> {
            let mut at_stop = self.sample(server_pid).await?;
            if self.sqlite_path.is_some() {
                return Ok(at_stop);
            }
            tokio::time::sleep(Duration::from_secs(11)).await;
            let mut previous = self.sample(None).await?.tables;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let next = self.sample(None).await?.tables;
                if next == previous {
                    break;
                }
                previous = next;
            }
            at_stop.tables = previous;
            Ok(at_stop)
        }

        pub(super) async fn sample(&self, server_pid: Option<u32>) -> anyhow::Result<Sample> {
            let mut sample = Sample {
                server_cpu_ms: server_pid.and_then(cpu_ms),
                ..Sample::default()
            };
            if let Some(path) = &self.sqlite_path {
                let size = |suffix: &str| {
                    let mut name = path.clone().into_os_string();
                    name.push(suffix);
                    std::fs::metadata(name).map_or(0, |meta| meta.len() as i64)
                };
                sample.database_bytes = size("") + size("-wal");
                return Ok(sample);
            }
            let rows = self
                .connection
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT relname::text AS name, n_tup_ins::bigint AS inserted, \
                     pg_total_relation_size(relid)::bigint AS bytes FROM pg_stat_user_tables",
                ))
                .await?;
            for row in rows {
                let name: String = row.try_get("", "name")?;
                let inserted: i64 = row.try_get("", "inserted")?;
                let bytes: i64 = row.try_get("", "bytes")?;
                // Partitions count under their parent's name (progress_events_2026_12 -> progress_events).
                let table = partition_parent(&name);
                let entry = sample.tables.entry(table).or_default();
                entry.0 += inserted;
                entry.1 += bytes;
            }
            let row = self
                .connection
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal, \
                     pg_database_size(current_database())::bigint AS size, \
                     (SELECT string_agg(pid::text, ',') FROM pg_stat_activity \
                      WHERE datname = current_database() OR backend_type IN \
                      ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher')) AS pids",
                ))
                .await?
                .context("no answer")?;
            sample.wal_bytes = Some(row.try_get("", "wal")?);
            sample.database_bytes = row.try_get("", "size")?;
            let pids: Option<String> = row.try_get("", "pids")?;
            sample.database_cpu_ms = Some(
                pids.unwrap_or_default()
                    .split(',')
                    .filter_map(|pid| pid.parse().ok())
                    .filter_map(cpu_ms)
                    .sum(),
            );
            Ok(sample)
        }
    }

    /// Monthly partitions (`progress_events_p202612`, see src/store/partition.rs) and the default
    /// partition (`progress_events_default`) count as their table.
    fn partition_parent(name: &str) -> String {
        if let Some((parent, month)) = name.rsplit_once("_p")
            && month.len() == 6
            && month.bytes().all(|byte| byte.is_ascii_digit())
        {
            return parent.to_owned();
        }
        name.strip_suffix("_default").unwrap_or(name).to_owned()
    }

    /// User plus system CPU time of process `pid`, in milliseconds (`/proc/<pid>/stat`).
    fn cpu_ms(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; fields resume after its closing parenthesis.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // Linux reports these in USER_HZ, fixed at 100 ticks a second for user space.
        Some(ticks * 10.0)
    }

    /// What one item cost between `before` and `after`, with `items` items in between.
    pub(super) fn per_item(before: &Sample, after: &Sample, items: u64) -> Value {
        let items = items.max(1) as f64;
        let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some((b - a) / items),
            _ => None,
        };
        let mut rows = serde_json::Map::new();
        let mut table_bytes = serde_json::Map::new();
        for (table, (inserted, bytes)) in &after.tables {
            let (inserted_before, bytes_before) =
                before.tables.get(table).copied().unwrap_or_default();
            if inserted > &inserted_before {
                rows.insert(
                    table.clone(),
                    json!((inserted - inserted_before) as f64 / items),
                );
            }
            if bytes > &bytes_before {
                table_bytes.insert(table.clone(), json!((bytes - bytes_before) as f64 / items));
            }
        }
        json!({
            "items": items,
            "server_cpu_ms": delta(before.server_cpu_ms, after.server_cpu_ms),
            "database_cpu_ms": delta(before.database_cpu_ms, after.database_cpu_ms),
            "wal_bytes": delta(before.wal_bytes.map(|b| b as f64), after.wal_bytes.map(|b| b as f64)),
            "database_bytes": (after.database_bytes - before.database_bytes) as f64 / items,
            "rows": rows,
            "table_bytes": table_bytes,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn partitions_count_under_their_parent() {
            assert_eq!(
                partition_parent("progress_events_p202612"),
                "progress_events"
            );
            assert_eq!(partition_parent("outbox_events_default"), "outbox_events");
            assert_eq!(partition_parent("activity_progress"), "activity_progress");
            assert_eq!(
                partition_parent("report_counters_by_org"),
                "report_counters_by_org"
            );
        }

        #[test]
        fn cpu_time_grows_while_this_process_computes() {
            let me = std::process::id();
            let before = cpu_ms(me).expect("our own /proc/<pid>/stat");
            let started = std::time::Instant::now();
            let mut spent = 0u64;
            let mut value = 0u64;
            while cpu_ms(me).expect("readable") <= before {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "CPU time never moved"
                );
                for _ in 0..100_000 {
                    value = value.wrapping_add(1);
                    spent = spent.wrapping_add(std::hint::black_box(value * value));
                }
            }
            assert!(spent > 0);
            assert!(cpu_ms(u32::MAX).is_none());
        }
    }
}

/// Samples the server's VmRSS every 100 ms while a scenario runs; reads VmHWM at the end.
struct RssSampler {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_field(pid, "VmRSS") {
                        peak_kib.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Self {
            pid,
            peak_kib,
            stop,
            task,
        }
    }

    async fn stop(self) -> Value {
        if let Some(rss) = status_field(self.pid, "VmRSS") {
            self.peak_kib.fetch_max(rss, Ordering::Relaxed);
        }
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        json!({
            "pid": self.pid,
            "rss_peak_mb": self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
            "vmhwm_mb": status_field(self.pid, "VmHWM").map(|kib| kib as f64 / 1024.0),
        })
    }
}

/// Reads a `kB` field of `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

fn percentile(sorted: &[u64], share: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn result_json(
    args: &BenchArgs,
    mut tally: Tally,
    elapsed: Duration,
    connections: usize,
    memory: Option<Value>,
    extra: Value,
) -> Value {
    tally.latencies_us.sort_unstable();
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let latencies = &tally.latencies_us;
    let mean = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / 1000.0
    };
    let errors_total: u64 = tally.errors.values().sum();
    let mut result = json!({
        "scenario": args.scenario.name(),
        "skipped": false,
        "concurrency": args.concurrency,
        "connections": connections,
        "batch": (args.scenario == Scenario::RecordProgressBatch).then_some(args.batch),
        "batch_scope": (args.scenario == Scenario::RecordProgressBatch)
            .then(|| format!("{:?}", args.batch_scope).to_lowercase()),
        "replay": args.replay,
        "seconds": seconds,
        "ok": tally.ok,
        "items": tally.items,
        "unit": args.scenario.unit(),
        "calls_per_second": tally.ok as f64 / seconds,
        "items_per_second": tally.items as f64 / seconds,
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": latencies.last().map_or(0.0, |max| *max as f64 / 1000.0),
            "mean": mean,
        },
        "errors": tally.errors,
        "errors_total": errors_total,
        "memory": memory,
    });
    if let (Some(target), Some(source)) = (result.as_object_mut(), extra.as_object()) {
        for (key, value) in source {
            target.insert(key.clone(), value.clone());
        }
    }
    result
}

fn print_table(result: &Value) {
    let name = result["scenario"].as_str().unwrap_or("?");
    if result["skipped"].as_bool().unwrap_or(false) {
        println!(
            "{name:<24} skipped: {}",
            result["reason"].as_str().unwrap_or("")
        );
        return;
    }
    let latency = &result["latency_ms"];
    println!(
        "{:<24} {:>6} {:>10} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario",
        "conc",
        "calls/s",
        "items/s",
        "unit",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    println!(
        "{:<24} {:>6} {:>10.1} {:>12.1} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
        name,
        result["concurrency"].as_u64().unwrap_or(0),
        result["calls_per_second"].as_f64().unwrap_or(0.0),
        result["items_per_second"].as_f64().unwrap_or(0.0),
        result["unit"].as_str().unwrap_or(""),
        latency["p50"].as_f64().unwrap_or(0.0),
        latency["p90"].as_f64().unwrap_or(0.0),
        latency["p99"].as_f64().unwrap_or(0.0),
        latency["max"].as_f64().unwrap_or(0.0),
        result["errors_total"].as_u64().unwrap_or(0),
    );
    if let Some(errors) = result["errors"].as_object()
        && !errors.is_empty()
    {
        let line: Vec<String> = errors
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect();
        println!("  errors by code: {}", line.join(" "));
    }
    if !result["memory"].is_null() {
        println!(
            "  server memory: peak RSS during run {:.1} MB, VmHWM {:.1} MB",
            result["memory"]["rss_peak_mb"].as_f64().unwrap_or(0.0),
            result["memory"]["vmhwm_mb"].as_f64().unwrap_or(0.0)
        );
    }
    if result["cost"].is_object() {
        let cost = &result["cost"];
        println!(
            "  cost per item: server CPU {:.3} ms, database CPU {:.3} ms, WAL {:.0} B, database growth {:.0} B, rows {}",
            cost["server_cpu_ms"].as_f64().unwrap_or(f64::NAN),
            cost["database_cpu_ms"].as_f64().unwrap_or(f64::NAN),
            cost["wal_bytes"].as_f64().unwrap_or(f64::NAN),
            cost["database_bytes"].as_f64().unwrap_or(f64::NAN),
            cost["rows"]
        );
    }
    if result.get("created").is_some() {
        println!(
            "  import: created {} updated {} unchanged {} failed {}",
            result["created"], result["updated"], result["unchanged"], result["failed"]
        );
    }
}

/// Baseline without the server: single-row durable INSERTs into `bench_progress_events`, a copy
/// of the progress-event table, one transaction each, `--concurrency` connections at once.
async fn sql_insert(config: &Config, args: &BenchArgs) -> anyhow::Result<Value> {
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement, Value as SqlValue};
    let mut config = config.clone();
    config.database.db_max_connections = Some(args.concurrency.max(1) as u32);
    let store = crate::store::Store::connect(&config).await?;
    let connection = store.connection().clone();
    let backend = connection.get_database_backend();
    let ddl: &[&str] = if backend == DbBackend::Postgres {
        &["CREATE TABLE IF NOT EXISTS bench_progress_events (LIKE progress_events INCLUDING ALL)"]
    } else {
        &[
            "CREATE TABLE IF NOT EXISTS bench_progress_events (event_id varchar(36) NOT NULL PRIMARY KEY, \
             enrollment_id varchar(36) NOT NULL, activity_id varchar(36) NOT NULL, verb varchar(16) NOT NULL, \
             score integer NULL, duration_seconds bigint NOT NULL, occurred_time timestamp_with_timezone_text NOT NULL, \
             source varchar(16) NOT NULL, evidence_uri text NULL, evidence_note text NULL, provenance_note text NULL, \
             actor varchar NOT NULL, payload_hash varchar(64) NOT NULL, recorded_time timestamp_with_timezone_text NOT NULL, \
             ack_activity_state varchar(16) NOT NULL, ack_percent_complete real NOT NULL, ack_enrollment_state varchar(16) NOT NULL)",
            "CREATE INDEX IF NOT EXISTS idx_bench_progress_events_enrollment ON bench_progress_events (enrollment_id, recorded_time)",
            "CREATE INDEX IF NOT EXISTS idx_bench_progress_events_recorded ON bench_progress_events (recorded_time, event_id)",
        ]
    };
    for statement in ddl {
        connection
            .execute_unprepared(statement)
            .await
            .context("creating bench_progress_events")?;
    }
    let sql = if backend == DbBackend::Postgres {
        "INSERT INTO bench_progress_events (event_id, enrollment_id, activity_id, verb, score, duration_seconds, \
         occurred_time, source, actor, payload_hash, recorded_time, ack_activity_state, ack_percent_complete, \
         ack_enrollment_state) VALUES ($1, $2, $3, 'PROGRESSED', NULL, $4, now(), 'APP', 'bench', $5, now(), \
         'IN_PROGRESS', 10.0, 'IN_PROGRESS')"
    } else {
        "INSERT INTO bench_progress_events (event_id, enrollment_id, activity_id, verb, score, duration_seconds, \
         occurred_time, source, actor, payload_hash, recorded_time, ack_activity_state, ack_percent_complete, \
         ack_enrollment_state) VALUES ($1, $2, $3, 'PROGRESSED', NULL, $4, datetime('now'), 'APP', 'bench', $5, \
         datetime('now'), 'IN_PROGRESS', 10.0, 'IN_PROGRESS')"
    };
    let measuring = Arc::new(AtomicBool::new(args.warmup.is_zero()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (connection, measuring, stop) = (connection.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let measured = measuring.load(Ordering::Relaxed);
                let id = uuid::Uuid::new_v4().to_string();
                let values: Vec<SqlValue> = vec![
                    id.clone().into(),
                    uuid::Uuid::new_v4().to_string().into(),
                    uuid::Uuid::new_v4().to_string().into(),
                    600i64.into(),
                    id.replace('-', "").into(),
                ];
                let started = Instant::now();
                let outcome = connection
                    .execute_raw(Statement::from_sql_and_values(backend, sql, values))
                    .await;
                if !measured {
                    continue;
                }
                match outcome {
                    Ok(_) => {
                        tally
                            .latencies_us
                            .push(started.elapsed().as_micros() as u64);
                        tally.ok += 1;
                        tally.items += 1;
                    }
                    Err(error) => {
                        let kind = if error.to_string().contains("locked") {
                            "Busy"
                        } else {
                            "DbError"
                        };
                        *tally.errors.entry(kind.to_owned()).or_default() += 1;
                    }
                }
            }
            tally
        }));
    }
    tokio::time::sleep(args.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("insert task")?);
    }
    let elapsed = started.elapsed();
    let extra = json!({"backend": format!("{backend:?}")});
    store.close().await;
    Ok(result_json(args, tally, elapsed, 0, None, extra))
}

/// The statements of one GetEnrollmentProgress (the enrolment with its learner's organisation
/// path, then its activity tallies), as `Store::enrollment_progress` sends them.
const SQL_READ_PROGRESS: [&str; 2] = [
    "SELECT e.*, o.path AS organization_path FROM enrollments e JOIN people p ON p.id = e.person_id \
     JOIN organizations o ON o.id = p.organization_id WHERE e.id = $1",
    "SELECT * FROM activity_progress WHERE enrollment_id = $1",
];

/// The statement of one ListProgress page of 50 for a cohort, as `Store::list_progress` builds it.
const SQL_READ_LIST: &str = "SELECT e.id AS enrollment_id, e.person_id, e.cohort_id, e.state, \
     COALESCE(p.percent_complete, 0.0) AS percent_complete, e.completed_time, p.last_event_time \
     FROM enrollments e LEFT JOIN enrollment_progress p ON p.enrollment_id = e.id \
     WHERE e.cohort_id = $1 ORDER BY e.id LIMIT 51";

/// Read baselines: what GetEnrollmentProgress (`sql-read-progress`) or a cohort's ListProgress
/// page (`sql-read-list`) asks of the database, sent straight to it over `--concurrency` pooled
/// connections (prepared statements, as the server sends them), for a random enrolment or cohort
/// of the whole database.
async fn sql_read(config: &Config, args: &BenchArgs) -> anyhow::Result<Value> {
    use sea_orm::{ConnectionTrait as _, Statement};
    let mut config = config.clone();
    config.database.db_max_connections = Some(args.concurrency.max(1) as u32);
    let store = crate::store::Store::connect(&config).await?;
    let connection = store.connection().clone();
    let backend = connection.get_database_backend();
    let population = if args.scenario == Scenario::SqlReadProgress {
        "SELECT id FROM enrollments"
    } else {
        "SELECT DISTINCT cohort_id AS id FROM enrollments"
    };
    let ids: Arc<Vec<String>> = Arc::new(
        connection
            .query_all_raw(Statement::from_string(backend, population))
            .await?
            .iter()
            .map(|row| row.try_get::<String>("", "id"))
            .collect::<Result<_, _>>()?,
    );
    if ids.is_empty() {
        bail!("no enrolments to read; seed first");
    }
    let statements: Vec<&'static str> = if args.scenario == Scenario::SqlReadProgress {
        SQL_READ_PROGRESS.to_vec()
    } else {
        vec![SQL_READ_LIST]
    };
    let measuring = Arc::new(AtomicBool::new(args.warmup.is_zero()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for seed in 0..args.concurrency.max(1) {
        let (connection, measuring, stop) = (connection.clone(), measuring.clone(), stop.clone());
        let (ids, statements) = (ids.clone(), statements.clone());
        tasks.push(tokio::spawn(async move {
            use rand::{Rng as _, SeedableRng as _};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed as u64);
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let measured = measuring.load(Ordering::Relaxed);
                let id = ids[rng.random_range(0..ids.len())].clone();
                let started = Instant::now();
                let mut outcome = Ok(());
                for sql in &statements {
                    let statement =
                        Statement::from_sql_and_values(backend, *sql, [id.clone().into()]);
                    if let Err(error) = connection.query_all_raw(statement).await {
                        outcome = Err(error);
                        break;
                    }
                }
                if !measured {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        tally
                            .latencies_us
                            .push(started.elapsed().as_micros() as u64);
                        tally.ok += 1;
                        tally.items += 1;
                    }
                    Err(_) => *tally.errors.entry("DbError".to_owned()).or_default() += 1,
                }
            }
            tally
        }));
    }
    tokio::time::sleep(args.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("read task")?);
    }
    let elapsed = started.elapsed();
    let extra = json!({
        "backend": format!("{backend:?}"),
        "population": ids.len(),
        "note": format!(
            "lms bench {}: {}, straight to the database over {} pooled connections, for a random one of {} {}",
            args.scenario.name(),
            if args.scenario == Scenario::SqlReadProgress {
                "the two reads of one GetEnrollmentProgress"
            } else {
                "the read of one ListProgress page of 50"
            },
            args.concurrency,
            ids.len(),
            if args.scenario == Scenario::SqlReadProgress { "enrolments" } else { "cohorts" },
        ),
    });
    store.close().await;
    Ok(result_json(args, tally, elapsed, 0, None, extra))
}

pub mod report {
    //! BENCHMARKS.md from the JSON results of `bench/run.sh`: every figure, its baseline and
    //! ratio, and the six targets of the scale issue with met or missed.

    use super::*;

    /// Loads `<results>/<backend>/*.json` into name -> value.
    fn load(folder: &Path) -> BTreeMap<String, Value> {
        let mut found = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(folder) else {
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(value) = serde_json::from_str::<Value>(&text)
            {
                found.insert(stem.to_owned(), value);
            }
        }
        found
    }

    fn number(value: &Value) -> Option<f64> {
        value.as_f64()
    }

    fn fmt(value: Option<f64>, decimals: usize) -> String {
        match value {
            Some(value) => format!("{value:.decimals$}"),
            None => "n/a".to_owned(),
        }
    }

    fn ratio(value: Option<f64>, base: Option<f64>) -> String {
        match (value, base) {
            (Some(value), Some(base)) if base > 0.0 => format!("{:.2}×", value / base),
            _ => "n/a".to_owned(),
        }
    }

    /// Writes the report for every backend found under `results`.
    pub fn write(results: &Path, out: &Path) -> anyhow::Result<()> {
        let mut text = String::from(
            "# Benchmarks\n\nWritten by `bench/run.sh` (via `lms bench report`) from the JSON results of one run per \
             database, kept in `bench/results/<backend>/`. Re-run with `bench/run.sh postgres` and \
             `bench/run.sh sqlite`. Throughputs are per second of measured time (after the warm-up); \
             latencies are client-side, per call; every progress event is acknowledged only after its \
             transaction committed.\n\n",
        );
        for backend in ["postgres", "sqlite"] {
            let data = load(&results.join(backend));
            if data.is_empty() {
                text.push_str(&format!(
                    "## {backend}\n\nNo results yet: run `bench/run.sh {backend}`.\n\n"
                ));
                continue;
            }
            section(&mut text, backend, &data);
        }
        if let Ok(notes) = std::fs::read_to_string(results.join("NOTES.md")) {
            text.push_str(&notes);
        }
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
        Ok(())
    }

    fn section(text: &mut String, backend: &str, data: &BTreeMap<String, Value>) {
        let empty = Value::Null;
        let get = |name: &str| data.get(name).unwrap_or(&empty);
        let machine = get("machine");
        let title = if backend == "postgres" {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        text.push_str(&format!("## {title}\n\n"));
        text.push_str(&format!(
            "Machine: {} CPUs, {} memory, kernel {}; {}. Commit {} ({}), run {}. Scale: {}.\n\n",
            machine["nproc"].as_str().unwrap_or("?"),
            machine["memory"].as_str().unwrap_or("?"),
            machine["kernel"].as_str().unwrap_or("?"),
            machine["database"].as_str().unwrap_or(""),
            machine["commit"].as_str().unwrap_or("?"),
            machine["dirty"].as_str().unwrap_or(""),
            machine["date"].as_str().unwrap_or("?"),
            machine["scale"].as_str().unwrap_or("?"),
        ));
        let seed = get("seed");
        if !seed.is_null() {
            text.push_str(&format!(
                "Seed (`lms seed --profile {} --seed {}`): {} organisations, {} people, {} cohorts, {} enrolments, \
                 {} progress events in {:.0} s ({:.0} rows/s through the API; people import {:.0} rows/s).\n\n",
                seed["profile"].as_str().unwrap_or("?"),
                seed["seed"],
                seed["organizations"],
                seed["people"],
                seed["cohorts"],
                seed["enrollments"],
                seed["events"],
                number(&seed["seconds"]).unwrap_or(0.0),
                number(&seed["rows_per_second"]).unwrap_or(0.0),
                number(&seed["import_rows_per_second"]).unwrap_or(0.0),
            ));
        }
        // Baselines.
        let baseline_rate = |name: &str| -> Option<f64> {
            let value = get(name);
            number(&value["tps"]).or_else(|| number(&value["items_per_second"]))
        };
        let insert_low = if backend == "postgres" {
            "pgbench-low"
        } else {
            "sql-insert-low"
        };
        let insert_high = if backend == "postgres" {
            "pgbench-high"
        } else {
            "sql-insert-high"
        };
        let health = number(&get("health")["calls_per_second"]);
        text.push_str("### Baselines (same run)\n\n| baseline | clients | per second | latency avg ms | note |\n|---|---:|---:|---:|---|\n");
        for name in [
            insert_low,
            insert_high,
            "pgbench-read",
            "pgbench-list",
            "sql-read-progress",
            "sql-read-list",
            "health",
        ] {
            let value = get(name);
            if value.is_null() && (name.starts_with("pgbench-") || name.starts_with("sql-read-")) {
                continue;
            }
            if value.is_null() {
                text.push_str(&format!("| {name} | | n/a | | not measured |\n"));
                continue;
            }
            let clients = value["clients"]
                .as_u64()
                .or_else(|| value["concurrency"].as_u64())
                .unwrap_or(0);
            let latency =
                number(&value["latency_ms_avg"]).or_else(|| number(&value["latency_ms"]["mean"]));
            let note = value["note"].as_str().unwrap_or(match name {
                "health" => "grpc.health Check through the full server stack: the RPC floor",
                _ if backend == "postgres" => "pgbench -n -j 2 -T 20 -f bench/pgbench-insert.sql: one durable single-row INSERT per transaction",
                _ => "lms bench sql-insert: one durable single-row INSERT per transaction (SQLite WAL, synchronous=FULL)",
            });
            text.push_str(&format!(
                "| {name} | {clients} | {} | {} | {note} |\n",
                fmt(baseline_rate(name), 0),
                fmt(latency, 2)
            ));
        }
        let low_clients = get(insert_low)["clients"]
            .as_u64()
            .or_else(|| get(insert_low)["concurrency"].as_u64());
        let h2load = get("h2load");
        if !h2load.is_null() {
            text.push_str(&format!(
                "\nCross-check with h2load ({}): {} req/s, {}; `lms bench` on the same method and concurrency: {} calls/s.\n",
                h2load["method"].as_str().unwrap_or("?"),
                fmt(number(&h2load["rps"]), 0),
                h2load["note"].as_str().unwrap_or(""),
                fmt(number(&get(h2load["compare_with"].as_str().unwrap_or("get-progress"))["calls_per_second"]), 0),
            ));
        }
        // Scenarios.
        text.push_str("\n### Scenarios\n\n| scenario | clients | calls/s | items/s | p50 ms | p90 ms | p99 ms | max ms | errors | baseline | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
        let scenarios = [
            ("health", "health", None),
            (
                "record-progress",
                "record-progress (unary)",
                Some(insert_high),
            ),
            (
                "record-progress-batch",
                "record-progress-batch (one cohort per batch)",
                Some(insert_low),
            ),
            (
                "record-progress-batch-random",
                "record-progress-batch (random enrolments)",
                Some(insert_low),
            ),
            ("stream-progress", "stream-progress", Some(insert_low)),
            (
                "stream-progress-1000",
                "stream-progress, 1,000 streams",
                Some(insert_low),
            ),
            ("get-progress", "get-progress", Some("health")),
            (
                "get-progress",
                "get-progress, against pgbench of its reads",
                Some("pgbench-read"),
            ),
            (
                "get-progress",
                "get-progress, against its reads sent straight to the database",
                Some("sql-read-progress"),
            ),
            (
                "get-progress-uncached",
                "get-progress, cache off (`--progress-cache-mb 0`)",
                Some("sql-read-progress"),
            ),
            (
                "list-cohort-progress",
                "list-cohort-progress",
                Some("health"),
            ),
            (
                "list-cohort-progress",
                "list-cohort-progress, against pgbench of its read",
                Some("pgbench-list"),
            ),
            (
                "list-cohort-progress",
                "list-cohort-progress, against its read sent straight to the database",
                Some("sql-read-list"),
            ),
            ("enroll", "enroll", Some(insert_high)),
            ("import-people", "import-people (new)", None),
            (
                "import-people-again",
                "import-people (re-import, unchanged)",
                Some("import-people"),
            ),
            ("completion-report", "completion-report", Some("health")),
            ("cascade-reach", "cascade-reach", Some("health")),
        ];
        for (name, label, base) in scenarios {
            let value = get(name);
            if value.is_null() {
                text.push_str(&format!("| {label} | | | | | | | | | | not run |\n"));
                continue;
            }
            if value["skipped"].as_bool().unwrap_or(false) {
                text.push_str(&format!(
                    "| {label} | | | | | | | | | | skipped: {} |\n",
                    value["reason"].as_str().unwrap_or("")
                ));
                continue;
            }
            let latency = &value["latency_ms"];
            let errors = value["errors"]
                .as_object()
                .map(|errors| {
                    if errors.is_empty() {
                        "0".to_owned()
                    } else {
                        errors
                            .iter()
                            .map(|(code, n)| format!("{code} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                })
                .unwrap_or_else(|| "0".to_owned());
            let items = number(&value["items_per_second"]);
            let (base_name, base_value) = match base {
                Some("health") => ("health RPS".to_owned(), health),
                Some("import-people") => (
                    "new import rows/s".to_owned(),
                    number(&get("import-people")["items_per_second"]),
                ),
                Some(other) => (format!("{other} TPS"), baseline_rate(other)),
                None if name == "import-people" => {
                    ("target 20,000 rows/s".to_owned(), Some(20_000.0))
                }
                None => (String::new(), None),
            };
            let read_baseline = base.is_some_and(|base| {
                base.starts_with("pgbench-read")
                    || base == "pgbench-list"
                    || base.starts_with("sql-read-")
            });
            if read_baseline && base_value.is_none() {
                continue;
            }
            let compared = if read_baseline || base == Some("health") {
                number(&value["calls_per_second"])
            } else {
                items
            };
            text.push_str(&format!(
                "| {label} | {} | {} | {} {} | {} | {} | {} | {} | {errors} | {base_name} | {} |\n",
                value["concurrency"].as_u64().unwrap_or(0),
                fmt(number(&value["calls_per_second"]), 0),
                fmt(items, 0),
                value["unit"].as_str().unwrap_or(""),
                fmt(number(&latency["p50"]), 2),
                fmt(number(&latency["p90"]), 2),
                fmt(number(&latency["p99"]), 2),
                fmt(number(&latency["max"]), 2),
                if base_value.is_some() {
                    ratio(compared, base_value)
                } else {
                    String::new()
                },
            ));
        }
        // Per-event cost.
        let costed: Vec<(&str, &Value)> = [
            ("record-progress (unary)", "record-progress"),
            (
                "record-progress-batch (one cohort per batch)",
                "record-progress-batch",
            ),
            ("stream-progress", "stream-progress"),
        ]
        .into_iter()
        .map(|(label, name)| (label, &get(name)["cost"]))
        .filter(|(_, cost)| cost.is_object())
        .collect();
        if !costed.is_empty() {
            text.push_str(
                "\n### Cost of one progress event (`--cost`)\n\nOver each measured window: CPU \
                 milliseconds of the server process and of the database processes serving it \
                 (`/proc/<pid>/stat`), bytes of WAL and of the database's growth, and rows inserted \
                 per table (`pg_stat_user_tables`), each divided by the events acknowledged. \
                 docs/capacity.md builds on these.\n\n\
                 | scenario | server CPU ms | database CPU ms | WAL bytes | database bytes | rows inserted per event |\n\
                 |---|---:|---:|---:|---:|---|\n",
            );
            for (label, cost) in costed {
                let rows = cost["rows"]
                    .as_object()
                    .map(|rows| {
                        rows.iter()
                            .map(|(table, n)| format!("{table} {}", fmt(n.as_f64(), 2)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                text.push_str(&format!(
                    "| {label} | {} | {} | {} | {} | {rows} |\n",
                    fmt(number(&cost["server_cpu_ms"]), 3),
                    fmt(number(&cost["database_cpu_ms"]), 3),
                    fmt(number(&cost["wal_bytes"]), 0),
                    fmt(number(&cost["database_bytes"]), 0),
                ));
            }
        }
        // Targets.
        text.push_str("\n### Targets\n\n| # | target | measured | verdict |\n|---|---|---|---|\n");
        let verdict = |met: Option<bool>| match met {
            Some(true) => "**met**",
            Some(false) => "**missed**",
            None => "not measured",
        };
        // The cohort-scoped batch when measured, else the random-enrolment one.
        let (batch_result, scope) = if get("record-progress-batch").is_null() {
            (get("record-progress-batch-random"), "random enrolments")
        } else {
            (get("record-progress-batch"), "one cohort per batch")
        };
        let batch = number(&batch_result["items_per_second"]);
        let low = baseline_rate(insert_low);
        let batch_clients = batch_result["concurrency"].as_u64();
        text.push_str(&format!(
            "| 1 | record-progress-batch events/s ≥ 3× single-row insert TPS at the same concurrency ({} clients) | {scope}: {} events/s vs {} TPS = {} | {} |\n",
            batch_clients.or(low_clients).unwrap_or(0),
            fmt(batch, 0),
            fmt(low, 0),
            ratio(batch, low),
            verdict(batch.zip(low).map(|(b, l)| b >= 3.0 * l)),
        ));
        let unary = number(&get("record-progress")["items_per_second"]);
        let high = baseline_rate(insert_high);
        text.push_str(&format!(
            "| 2 | record-progress (unary, {} clients) ≥ 0.5× insert TPS at the same concurrency, acked after commit | {} events/s vs {} TPS = {} | {} |\n",
            get("record-progress")["concurrency"].as_u64().unwrap_or(0),
            fmt(unary, 0),
            fmt(high, 0),
            ratio(unary, high),
            verdict(unary.zip(high).map(|(u, h)| u >= 0.5 * h)),
        ));
        // The read path against the database's own rate for the same reads: pgbench on
        // PostgreSQL, `lms bench sql-read-*` on SQLite (and on PostgreSQL when pgbench is absent).
        let read_base = |pgbench: &str, direct: &str| {
            baseline_rate(pgbench)
                .map(|rate| (pgbench.to_owned(), rate))
                .or_else(|| baseline_rate(direct).map(|rate| (direct.to_owned(), rate)))
        };
        let health_p99 = number(&get("health")["latency_ms"]["p99"]);
        let mut read_parts = Vec::new();
        let mut read_met: Option<bool> = Some(true);
        for (scenario, pgbench, direct) in [
            ("get-progress", "pgbench-read", "sql-read-progress"),
            ("list-cohort-progress", "pgbench-list", "sql-read-list"),
        ] {
            let rate = number(&get(scenario)["calls_per_second"]);
            let p99 = number(&get(scenario)["latency_ms"]["p99"]);
            let base = read_base(pgbench, direct);
            read_parts.push(format!(
                "{scenario} {} calls/s vs {} {} = {}, p99 {} ms",
                fmt(rate, 0),
                base.as_ref()
                    .map(|(name, _)| name.as_str())
                    .unwrap_or("(no baseline)"),
                fmt(base.as_ref().map(|(_, rate)| *rate), 0),
                ratio(rate, base.as_ref().map(|(_, rate)| *rate)),
                fmt(p99, 2),
            ));
            read_met = match (read_met, rate, base, p99) {
                (Some(so_far), Some(rate), Some((_, base)), Some(p99)) => {
                    Some(so_far && rate >= base && p99 <= 10.0)
                }
                _ => None,
            };
        }
        text.push_str(&format!(
            "| 3 | get-progress and list-cohort-progress ({} clients) ≥ 1× the database's own rate for the same reads, p99 ≤ 10 ms | {}; the RPC floor (health) p99 {} ms on this run | {} |\n",
            get("get-progress")["concurrency"].as_u64().unwrap_or(0),
            read_parts.join("; "),
            fmt(health_p99, 2),
            verdict(read_met),
        ));
        let import_new = number(&get("import-people")["items_per_second"]);
        let import_again = number(&get("import-people-again")["items_per_second"]);
        let import_rows = get("import-people")["expected_rows"].as_u64().unwrap_or(0);
        text.push_str(&format!(
            "| 4 | import-people of 445,000 ≥ 20,000 rows/s; re-import at least as fast | {import_rows} rows: new {} rows/s, re-import {} rows/s | {} |\n",
            fmt(import_new, 0),
            fmt(import_again, 0),
            verdict(import_new.zip(import_again).map(|(n, a)| n >= 20_000.0 && a >= n && import_rows >= 445_000)),
        ));
        let measured =
            |value: &Value| !value.is_null() && !value["skipped"].as_bool().unwrap_or(true);
        let report = get("completion-report");
        let report_p99 = measured(report)
            .then(|| number(&report["latency_ms"]["p99"]))
            .flatten();
        let reach = get("cascade-reach");
        let reach_p99 = measured(reach)
            .then(|| number(&reach["latency_ms"]["p99"]))
            .flatten();
        let report_text = match report_p99 {
            Some(p99) => format!(
                "completion report p99 {} ms ({})",
                fmt(Some(p99), 1),
                verdict(Some(p99 < 200.0))
            ),
            None => format!(
                "completion report: {}",
                report["reason"].as_str().unwrap_or("not measured")
            ),
        };
        let reach_text = match reach_p99 {
            Some(p99) => format!(
                "cascade reach p99 {} ms over {} people ({})",
                fmt(Some(p99), 1),
                reach["reach"]["total_people"],
                verdict(Some(p99 < 1000.0))
            ),
            None => format!(
                "cascade reach: {}",
                reach["reason"].as_str().unwrap_or("not measured")
            ),
        };
        text.push_str(&format!(
            "| 5 | completion-report, whole country by ministry < 200 ms; GetCascadeReach of a master trainer < 1 s | {report_text}; {reach_text} | {} |\n",
            verdict(match (report_p99, reach_p99) {
                (Some(report), Some(reach)) => Some(report < 200.0 && reach < 1000.0),
                (Some(report), None) if report >= 200.0 => Some(false),
                (None, Some(reach)) if reach >= 1000.0 => Some(false),
                _ => None,
            }),
        ));
        let streams = get("stream-progress-1000");
        let rss = number(&streams["memory"]["rss_peak_mb"]);
        text.push_str(&format!(
            "| 6 | server RSS < 150 MB with 1,000 concurrent stream-progress streams | peak RSS {} MB with {} streams ({} errors) | {} |\n\n",
            fmt(rss, 1),
            streams["concurrency"].as_u64().unwrap_or(0),
            streams["errors_total"].as_u64().unwrap_or(0),
            verdict(rss.map(|r| r < 150.0 && streams["errors_total"].as_u64() == Some(0))),
        ));
        if let Some(notes) = get("notes").as_str() {
            text.push_str(notes);
            text.push_str("\n\n");
        }
    }
}
