//! `lms seed`: a deterministic data-set generator that goes through the gRPC API.
//!
//! The seeder starts the server in-process on `127.0.0.1:0` over the configured database, mints
//! an admin token with the development key and calls the same RPCs a client would
//! (organisations, `ImportPeople`, courses, programmes, cohorts, `BatchEnroll`,
//! `BatchRecordProgress`), so every rule, audit entry and derived counter is exercised.
//!
//! Determinism: every request id and event id is derived from `--seed` and a label
//! ([`super::stable_id`]), and every random choice comes from a generator seeded from them.
//! Running the same command twice replays the first run: nothing changes the second time.
//!
//! A profile is a list of [`Step`]s; an area that lands later (certification, surveys) adds a
//! variant and a line in the profile's list.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeZone as _, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use tonic::Code;

use super::{Authed, Bearer, stable_id, stable_u64};
use crate::auth::{Role, token};
use crate::config::Config;
use crate::pb::{
    self, ActivityKind as Kind, DeliveryMode as Mode, OrganizationKind,
    certification_service_client::CertificationServiceClient,
    course_service_client::CourseServiceClient, delivery_service_client::DeliveryServiceClient,
    organization_service_client::OrganizationServiceClient,
    person_service_client::PersonServiceClient, programme_service_client::ProgrammeServiceClient,
    progress_service_client::ProgressServiceClient, survey_service_client::SurveyServiceClient,
};

/// Officers of the national profile.
pub const NATIONAL_OFFICERS: usize = 445_000;
/// Certified ambassadors of the national profile.
pub const NATIONAL_AMBASSADORS: usize = 200;
/// Departments under each ministry in the national profile.
pub const DEPARTMENTS_PER_MINISTRY: usize = 5;
/// Units under each department in the national profile.
pub const UNITS_PER_DEPARTMENT: usize = 5;
/// Learners per cohort in the national profile.
pub const COHORT_SIZE: usize = 50;
/// Code of the national cascade programme (what `lms bench` drives by default).
pub const NATIONAL_PROGRAMME: &str = "AIW-NAT";
/// Code of the national train-the-trainer programme for ambassadors.
pub const NATIONAL_TTT_PROGRAMME: &str = "AIW-NAT-TTT";
/// External id of the national master trainer, who trains the ambassadors.
pub const NATIONAL_MASTER: &str = "MT-NAT-001";
/// Code of the certification track of the national master trainer.
pub const NATIONAL_MASTER_TRACK: &str = "AIW-NAT-MASTER";
/// Code of the certification track of the ambassadors.
pub const NATIONAL_AMBASSADOR_TRACK: &str = "AIW-NAT-AMB";
/// Records per `ImportPeople` stream.
const IMPORT_STREAM_RECORDS: usize = 25_000;
/// Events per `BatchRecordProgress` call.
const PROGRESS_BATCH: usize = 1000;

/// The fourteen ministries: code, name, and their share of the national workforce (per mille).
pub const MINISTRIES: [(&str, &str, u32); 14] = [
    ("MOE", "Ministry of Education", 300),
    ("MOH", "Ministry of Health", 200),
    ("MOHA", "Ministry of Home Affairs", 120),
    ("MOD", "Ministry of Defence", 70),
    ("MOF", "Ministry of Finance", 50),
    ("KPKT", "Ministry of Local Government Development", 40),
    ("MOT", "Ministry of Transport", 40),
    ("MOA", "Ministry of Agriculture and Food Security", 40),
    ("MITI", "Ministry of Investment, Trade and Industry", 30),
    ("KD", "Ministry of Digital", 25),
    (
        "MOSTI",
        "Ministry of Science, Technology and Innovation",
        25,
    ),
    (
        "KPWKM",
        "Ministry of Women, Family and Community Development",
        25,
    ),
    ("KLN", "Ministry of Foreign Affairs", 20),
    ("KPDN", "Ministry of Domestic Trade and Cost of Living", 15),
];

const GIVEN_NAMES: [&str; 16] = [
    "Aisyah", "Ahmad", "Nurul", "Muhammad", "Siti", "Hafiz", "Mei Ling", "Wei Jie", "Priya",
    "Arjun", "Farah", "Daniel", "Kavitha", "Faizal", "Li Na", "Azlan",
];
const FAMILY_NAMES: [&str; 16] = [
    "Abdullah",
    "Rahman",
    "Ismail",
    "Tan",
    "Lim",
    "Wong",
    "Subramaniam",
    "Krishnan",
    "Hassan",
    "Ibrahim",
    "Lee",
    "Ong",
    "Yusof",
    "Raj",
    "Chong",
    "Osman",
];

/// Which data set to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The five programmes of DOMAIN.md at their real sizes.
    Demo,
    /// 14 ministries, 445,000 officers, 200 ambassadors, cohorts of ~50, progress spread.
    National,
}

/// Arguments of `lms seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Data set to make.
    #[arg(long, value_enum)]
    pub profile: Profile,
    /// Seed of every random choice, request id and event id; the same seed replays.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// National profile: number of officers (smaller for tests and smoke runs).
    #[arg(long, default_value_t = NATIONAL_OFFICERS)]
    pub officers: usize,
    /// National profile: number of ambassadors.
    #[arg(long, default_value_t = NATIONAL_AMBASSADORS)]
    pub ambassadors: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One step of a profile. Later areas add a variant here and a line in the profile's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Demo: organisations of the five programmes.
    DemoOrganizations,
    /// Demo: courses, programmes, people, cohorts, enrolments and progress of the five programmes.
    DemoProgrammes,
    /// Demo: the TVET and AI At Work master trainers certified, candidates through supervised
    /// co-deliveries to certificates, ambassadors certified and delivering to officers.
    DemoCertification,
    /// National: ministries, departments, units.
    NationalOrganizations,
    /// National: the train-the-trainer and the officer course, and their programmes.
    NationalCatalogue,
    /// National: ambassadors and officers through `ImportPeople`.
    NationalPeople,
    /// National: the ambassadors' cohort and their completed training.
    NationalAmbassadors,
    /// National: the master trainer certified, the ambassadors trained by them and certified.
    NationalCertification,
    /// National: cohorts of ~50 per department, enrolments and progress.
    NationalCohorts,
    /// National: one session per cohort, led by its ambassador, attendance taken, delivered.
    NationalSessions,
}

impl Step {
    fn title(self) -> &'static str {
        match self {
            Self::DemoOrganizations => "organisations",
            Self::DemoProgrammes => "the five programmes",
            Self::DemoCertification => "train the trainer: certificates, co-deliveries, cascade",
            Self::NationalOrganizations => "ministries, departments and units",
            Self::NationalCatalogue => "courses and programmes",
            Self::NationalPeople => "ambassadors and officers",
            Self::NationalAmbassadors => "ambassadors' training",
            Self::NationalCertification => "master trainer and ambassadors certified",
            Self::NationalCohorts => "cohorts, enrolments and progress",
            Self::NationalSessions => "ambassadors' sessions: attendance and delivery",
        }
    }
}

/// The steps of `profile`, in order.
pub fn steps(profile: Profile) -> &'static [Step] {
    match profile {
        Profile::Demo => &[
            Step::DemoOrganizations,
            Step::DemoProgrammes,
            Step::DemoCertification,
        ],
        Profile::National => &[
            Step::NationalOrganizations,
            Step::NationalCatalogue,
            Step::NationalPeople,
            Step::NationalAmbassadors,
            Step::NationalCertification,
            Step::NationalCohorts,
            Step::NationalSessions,
        ],
    }
}

/// Counts of what the seeder wrote (or replayed), by kind.
#[derive(Debug, Default)]
struct Counters {
    organizations: AtomicU64,
    people: AtomicU64,
    courses: AtomicU64,
    cohorts: AtomicU64,
    enrollments: AtomicU64,
    events: AtomicU64,
    certificates: AtomicU64,
    sessions: AtomicU64,
    attendance: AtomicU64,
    attendance_events: AtomicU64,
    /// People marked PRESENT at a session led by an ambassador (the cascade's second level).
    trained: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, amount: usize) {
        counter.fetch_add(amount as u64, Ordering::Relaxed);
    }

    fn rows(&self) -> u64 {
        [
            &self.organizations,
            &self.people,
            &self.courses,
            &self.cohorts,
            &self.enrollments,
            &self.events,
            &self.certificates,
            &self.sessions,
            &self.attendance,
            &self.attendance_events,
        ]
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .sum()
    }
}

/// Clients of every service the seeder calls, all carrying the admin token.
#[derive(Clone)]
struct Clients {
    organizations: OrganizationServiceClient<Authed>,
    people: PersonServiceClient<Authed>,
    courses: CourseServiceClient<Authed>,
    programmes: ProgrammeServiceClient<Authed>,
    progress: ProgressServiceClient<Authed>,
    certification: CertificationServiceClient<Authed>,
    delivery: DeliveryServiceClient<Authed>,
    surveys: SurveyServiceClient<Authed>,
}

impl Clients {
    fn new(channel: tonic::transport::Channel, bearer: Bearer) -> Self {
        const LARGE: usize = 64 * 1024 * 1024;
        Self {
            organizations: OrganizationServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            )
            .max_decoding_message_size(LARGE),
            people: PersonServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(LARGE),
            courses: CourseServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(LARGE),
            programmes: ProgrammeServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(LARGE),
            progress: ProgressServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(LARGE),
            certification: CertificationServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            )
            .max_decoding_message_size(LARGE),
            delivery: DeliveryServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(LARGE),
            surveys: SurveyServiceClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(LARGE),
        }
    }
}

/// An activity of a published version, in course order.
#[derive(Debug, Clone)]
pub struct ActivityInfo {
    /// Activity id.
    pub id: String,
    /// Its kind.
    pub kind: Kind,
    /// Pass mark of an assessment.
    pub pass_score: Option<i32>,
}

/// A published course version and its activities in order.
#[derive(Debug, Clone)]
pub struct CourseInfo {
    /// Course id.
    pub course_id: String,
    /// Version id.
    pub version_id: String,
    /// Module ids, in order.
    pub module_ids: Vec<String>,
    /// Activities, module by module.
    pub activities: Vec<ActivityInfo>,
}

/// Plan of a module: title and activities (kind, delivery mode).
type ModulePlan<'a> = (&'a str, &'a [(Kind, Mode)]);

/// A cohort made by the seeder and who is in it.
#[derive(Debug, Clone)]
pub struct SeededCohort {
    /// Label the request ids derive from.
    pub label: String,
    /// Cohort id.
    pub id: String,
    /// Programme code.
    pub programme: String,
    /// (external id, enrolment id) of its learners.
    pub enrollments: Vec<(String, String)>,
    /// National: external id of the ambassador who leads it, and the cohort's number in its
    /// department (which places its session in the ambassador's calendar).
    pub lead: Option<(String, usize)>,
}

/// What the seeder knows while it runs; steps read what earlier steps made.
struct Seeder {
    clients: Clients,
    /// The database, for `ANALYZE` as the tables grow.
    store: crate::store::Store,
    /// Rows written when statistics were last refreshed.
    analyzed_rows: Arc<AtomicU64>,
    seed: u64,
    args: SeedArgs,
    counters: Arc<Counters>,
    started: Instant,
    organizations: HashMap<String, String>,
    courses: HashMap<String, CourseInfo>,
    programmes: HashMap<String, String>,
    cohorts: Vec<SeededCohort>,
    /// National: people by department code, (external id, person id), sorted by external id.
    department_people: BTreeMap<String, Vec<(String, String)>>,
    /// National: expected number of officers per ministry code.
    officers_by_ministry: BTreeMap<String, u64>,
    /// National: person id of the master trainer, once certified.
    master: Option<String>,
    /// The server's certification settings: clock, reminder and renewal offsets.
    certification: crate::config::CertificationConfig,
    import_seconds: f64,
    import_rows: u64,
}

/// Runs `lms seed`: starts the server in-process over `config`'s database and seeds it through the API.
pub async fn run(mut config: Config, args: SeedArgs) -> anyhow::Result<()> {
    if config.auth.jwt_public_key.is_some() || config.auth.jwks_file.is_some() {
        bail!(
            "lms seed signs its admin token with the development key; unset the production key settings"
        );
    }
    config.server.listen = "127.0.0.1:0".parse().context("loopback address")?;
    // The seeder is the only caller: let it use the whole server.
    config.server.concurrency_limit = config.server.concurrency_limit.max(4096);
    let app = crate::App::build(config.clone()).await?;
    let store = app.store().clone();
    let address = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let jwt = token::sign_dev_token(
        &config.auth,
        &config.data_dir,
        &token::TokenRequest {
            subject: "lms-seed".to_owned(),
            roles: vec![Role::Admin],
            organization_id: None,
            ttl: Duration::from_secs(24 * 3600),
        },
    )?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await
        .context("connecting to the in-process server")?;
    let mut seeder = Seeder {
        clients: Clients::new(channel, Bearer::new(&jwt)?),
        seed: args.seed,
        counters: Arc::new(Counters::default()),
        started: Instant::now(),
        organizations: HashMap::new(),
        courses: HashMap::new(),
        programmes: HashMap::new(),
        cohorts: Vec::new(),
        department_people: BTreeMap::new(),
        officers_by_ministry: BTreeMap::new(),
        master: None,
        certification: config.certification.clone(),
        import_seconds: 0.0,
        import_rows: 0,
        store: store.clone(),
        analyzed_rows: Arc::new(AtomicU64::new(0)),
        args,
    };
    let mut outcome = seeder.run_steps().await;
    if outcome.is_ok() {
        // A bulk load leaves the planner's statistics behind; PostgreSQL's autovacuum would
        // catch up later (never, where it is off), and until then it may scan whole tables.
        outcome = store
            .analyze()
            .await
            .context("refreshing planner statistics");
        eprintln!("      planner statistics refreshed (ANALYZE)");
    }
    let _ = stop.send(());
    let stopped = server.await;
    outcome?;
    stopped.context("server task")??;
    Ok(())
}

impl Seeder {
    async fn run_steps(&mut self) -> anyhow::Result<()> {
        let profile = self.args.profile;
        eprintln!(
            "seeding profile {profile:?} with seed {} ({} steps)",
            self.seed,
            steps(profile).len()
        );
        for (index, step) in steps(profile).iter().enumerate() {
            let step_started = Instant::now();
            eprintln!("[{}/{}] {}", index + 1, steps(profile).len(), step.title());
            match step {
                Step::DemoOrganizations => self.demo_organizations().await?,
                Step::DemoProgrammes => self.demo_programmes().await?,
                Step::DemoCertification => self.demo_certification().await?,
                Step::NationalOrganizations => self.national_organizations().await?,
                Step::NationalCatalogue => self.national_catalogue().await?,
                Step::NationalPeople => self.national_people().await?,
                Step::NationalAmbassadors => self.national_ambassadors().await?,
                Step::NationalCertification => self.national_certification().await?,
                Step::NationalCohorts => self.national_cohorts().await?,
                Step::NationalSessions => self.national_sessions().await?,
            }
            eprintln!(
                "      done in {:.1} s",
                step_started.elapsed().as_secs_f64()
            );
            self.refresh_statistics();
        }
        self.summary()
    }

    fn summary(&self) -> anyhow::Result<()> {
        let seconds = self.started.elapsed().as_secs_f64();
        let counters = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let rows = counters.rows();
        let refused = load(&counters.refused);
        let summary = serde_json::json!({
            "profile": format!("{:?}", self.args.profile).to_lowercase(),
            "seed": self.seed,
            "organizations": load(&counters.organizations),
            "people": load(&counters.people),
            "courses": load(&counters.courses),
            "cohorts": load(&counters.cohorts),
            "enrollments": load(&counters.enrollments),
            "events": load(&counters.events),
            "refused": refused,
            "rows": rows,
            "seconds": seconds,
            "rows_per_second": rows as f64 / seconds.max(1e-9),
            "import_rows": self.import_rows,
            "import_seconds": self.import_seconds,
            "import_rows_per_second": self.import_rows as f64 / self.import_seconds.max(1e-9),
            "officers_by_ministry": self.officers_by_ministry,
            "certificates": load(&counters.certificates),
            "sessions": load(&counters.sessions),
            "attendance": load(&counters.attendance),
            "attendance_events": load(&counters.attendance_events),
            "master": self.master.as_ref().map(|_| NATIONAL_MASTER),
            "trained_by_ambassadors": load(&counters.trained),
        });
        println!(
            "seeded: {} organisations, {} people, {} courses, {} cohorts, {} enrolments, {} progress events",
            load(&counters.organizations),
            load(&counters.people),
            load(&counters.courses),
            load(&counters.cohorts),
            load(&counters.enrollments),
            load(&counters.events),
        );
        if load(&counters.certificates) > 0 || load(&counters.sessions) > 0 {
            println!(
                "certified: {} trainers; {} sessions delivered, {} attendance marks ({} people trained by ambassadors), {} ATTENDED events",
                load(&counters.certificates),
                load(&counters.sessions),
                load(&counters.attendance),
                load(&counters.trained),
                load(&counters.attendance_events),
            );
        }
        println!(
            "{rows} rows in {seconds:.1} s: {:.0} rows/s (people import: {:.0} rows/s)",
            rows as f64 / seconds.max(1e-9),
            self.import_rows as f64 / self.import_seconds.max(1e-9)
        );
        if !self.officers_by_ministry.is_empty() {
            let line: Vec<String> = self
                .officers_by_ministry
                .iter()
                .map(|(code, count)| format!("{code}={count}"))
                .collect();
            println!("officers by ministry: {}", line.join(" "));
        }
        if let Some(path) = &self.args.json {
            std::fs::write(path, serde_json::to_string_pretty(&summary)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if refused > 0 {
            bail!("{refused} records or events were refused; see the messages above");
        }
        Ok(())
    }

    fn progress_line(&self, what: &str, done: usize, total: usize) {
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "      {what}: {done}/{total}, {} rows so far, {:.0} rows/s",
            self.counters.rows(),
            self.counters.rows() as f64 / seconds.max(1e-9)
        );
        self.refresh_statistics();
    }

    /// Refreshes the planner's statistics in the background once another 250,000 rows are in.
    ///
    /// A bulk load outgrows the statistics its query plans were made with (where autovacuum
    /// is off, they are never refreshed): PostgreSQL keeps cached plans that scan tables which
    /// were small when planned, and the load slows as they grow. `ANALYZE` also invalidates
    /// those plans.
    fn refresh_statistics(&self) {
        let rows = self.counters.rows();
        let last = self.analyzed_rows.load(Ordering::Relaxed);
        if rows < last + 250_000
            || self
                .analyzed_rows
                .compare_exchange(last, rows, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.analyze().await {
                eprintln!("      ANALYZE failed (the load goes on): {error}");
            }
        });
    }

    // ---- building blocks -------------------------------------------------------------------

    /// Creates (or replays the creation of) an organisation; returns its id.
    async fn organization(
        &mut self,
        code: &str,
        name: &str,
        kind: OrganizationKind,
        parent: Option<&str>,
    ) -> anyhow::Result<String> {
        let parent_id = match parent {
            Some(parent) => self
                .organizations
                .get(parent)
                .cloned()
                .with_context(|| format!("parent organisation {parent} not seeded"))?,
            None => String::new(),
        };
        // Organisation request ids do not depend on the seed: both profiles share ministries.
        let request = pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: name.to_owned(),
                kind: kind.into(),
                parent_id,
                external_code: code.to_owned(),
                ..Default::default()
            }),
            request_id: stable_id(0, &format!("organization/{code}")),
        };
        let id = match self
            .clients
            .organizations
            .clone()
            .create_organization(request)
            .await
        {
            Ok(response) => response.into_inner().id,
            Err(status) if status.code() == Code::AlreadyExists => self
                .find_organization(code)
                .await?
                .with_context(|| format!("organisation {code} exists but cannot be listed"))?,
            Err(status) => bail!("creating organisation {code}: {status}"),
        };
        Counters::add(&self.counters.organizations, 1);
        self.organizations.insert(code.to_owned(), id.clone());
        Ok(id)
    }

    async fn find_organization(&self, code: &str) -> anyhow::Result<Option<String>> {
        let mut page_token = String::new();
        loop {
            let page = self
                .clients
                .organizations
                .clone()
                .list_organizations(pb::ListOrganizationsRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if let Some(found) = page
                .organizations
                .iter()
                .find(|organization| organization.external_code == code)
            {
                return Ok(Some(found.id.clone()));
            }
            if page.next_page_token.is_empty() {
                return Ok(None);
            }
            page_token = page.next_page_token;
        }
    }

    fn organization_id(&self, code: &str) -> anyhow::Result<String> {
        self.organizations
            .get(code)
            .cloned()
            .with_context(|| format!("organisation {code} not seeded"))
    }

    /// Creates and publishes a course with `modules`; a re-run finds it published and reads it back.
    async fn course(
        &mut self,
        code: &str,
        title: &str,
        provider: &str,
        modules: &[ModulePlan<'_>],
    ) -> anyhow::Result<CourseInfo> {
        self.course_with_survey(code, title, provider, modules, &[])
            .await
    }

    /// Like [`Self::course`], with `questions` on its SURVEY activities.
    async fn course_with_survey(
        &mut self,
        code: &str,
        title: &str,
        provider: &str,
        modules: &[ModulePlan<'_>],
        questions: &[pb::SurveyQuestion],
    ) -> anyhow::Result<CourseInfo> {
        let mut client = self.clients.courses.clone();
        let label = format!("course/{code}");
        let course = client
            .create_course(pb::CreateCourseRequest {
                course: Some(pb::Course {
                    code: code.to_owned(),
                    title: title.to_owned(),
                    description: format!("{title} (seeded)"),
                    provider_organization_id: self.organization_id(provider)?,
                    ..Default::default()
                }),
                request_id: stable_id(self.seed, &label),
            })
            .await
            .with_context(|| format!("creating course {code}"))?
            .into_inner();
        let version = client
            .create_course_version(pb::CreateCourseVersionRequest {
                course_id: course.id.clone(),
                copy_from_version_id: String::new(),
                request_id: stable_id(self.seed, &format!("{label}/version")),
            })
            .await
            .with_context(|| format!("creating a version of {code}"))?
            .into_inner();
        let mut version = client
            .get_course_version(pb::GetCourseVersionRequest {
                id: version.id.clone(),
            })
            .await?
            .into_inner();
        if version.state() != pb::CourseVersionState::Published {
            for (module_index, (module_title, activities)) in modules.iter().enumerate() {
                let module = client
                    .create_module(pb::CreateModuleRequest {
                        course_version_id: version.id.clone(),
                        module: Some(pb::Module {
                            title: (*module_title).to_owned(),
                            required: true,
                            ..Default::default()
                        }),
                        request_id: stable_id(self.seed, &format!("{label}/m{module_index}")),
                    })
                    .await
                    .with_context(|| format!("creating module {module_title} of {code}"))?
                    .into_inner();
                for (activity_index, (kind, mode)) in activities.iter().enumerate() {
                    client
                        .create_activity(pb::CreateActivityRequest {
                            module_id: module.id.clone(),
                            activity: Some(pb::Activity {
                                title: format!(
                                    "{module_title}: {}",
                                    activity_title(*kind, activity_index)
                                ),
                                kind: (*kind).into(),
                                delivery_mode: (*mode).into(),
                                required: true,
                                expected_minutes: if *kind == Kind::Assessment { 60 } else { 90 },
                                pass_score: (*kind == Kind::Assessment).then_some(70),
                                host_organization_id: if matches!(
                                    kind,
                                    Kind::FieldVisit | Kind::IndustryAttachment
                                ) {
                                    self.organizations.get("HOST").cloned().unwrap_or_default()
                                } else {
                                    String::new()
                                },
                                survey_questions: if *kind == Kind::Survey {
                                    questions.to_vec()
                                } else {
                                    Vec::new()
                                },
                                ..Default::default()
                            }),
                            request_id: stable_id(
                                self.seed,
                                &format!("{label}/m{module_index}/a{activity_index}"),
                            ),
                        })
                        .await
                        .with_context(|| format!("creating an activity of {code}"))?;
                }
            }
            client
                .publish_course_version(pb::PublishCourseVersionRequest {
                    id: version.id.clone(),
                    etag: String::new(),
                })
                .await
                .with_context(|| format!("publishing {code}"))?;
            version = client
                .get_course_version(pb::GetCourseVersionRequest {
                    id: version.id.clone(),
                })
                .await?
                .into_inner();
        }
        let mut modules = version.modules.clone();
        modules.sort_by_key(|module| module.position);
        let mut activities = Vec::new();
        for module in &mut modules {
            module.activities.sort_by_key(|activity| activity.position);
            for activity in &module.activities {
                activities.push(ActivityInfo {
                    id: activity.id.clone(),
                    kind: activity.kind(),
                    pass_score: activity.pass_score,
                });
            }
        }
        let info = CourseInfo {
            course_id: course.id.clone(),
            version_id: version.id,
            module_ids: modules.iter().map(|module| module.id.clone()).collect(),
            activities,
        };
        Counters::add(&self.counters.courses, 1);
        self.courses.insert(code.to_owned(), info.clone());
        Ok(info)
    }

    /// Creates a programme with `phases` (title, course codes, location, days); returns its id.
    async fn programme(
        &mut self,
        code: &str,
        title: &str,
        sponsor: &str,
        partners: &[&str],
        phases: &[(&str, &[&str], &str, i32)],
    ) -> anyhow::Result<String> {
        let mut proto_phases = Vec::new();
        for (phase_title, course_codes, location, days) in phases {
            let mut version_ids = Vec::new();
            for course in *course_codes {
                version_ids.push(
                    self.courses
                        .get(*course)
                        .with_context(|| format!("course {course} not seeded"))?
                        .version_id
                        .clone(),
                );
            }
            proto_phases.push(pb::Phase {
                title: (*phase_title).to_owned(),
                course_version_ids: version_ids,
                location: (*location).to_owned(),
                planned_duration_days: *days,
                ..Default::default()
            });
        }
        let partner_ids = partners
            .iter()
            .map(|partner| self.organization_id(partner))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let programme = self
            .clients
            .programmes
            .clone()
            .create_programme(pb::CreateProgrammeRequest {
                programme: Some(pb::Programme {
                    code: code.to_owned(),
                    title: title.to_owned(),
                    description: format!("{title} (seeded)"),
                    sponsor_organization_id: self.organization_id(sponsor)?,
                    partner_organization_ids: partner_ids,
                    phases: proto_phases,
                    ..Default::default()
                }),
                request_id: stable_id(self.seed, &format!("programme/{code}")),
            })
            .await
            .with_context(|| format!("creating programme {code}"))?
            .into_inner();
        self.programmes
            .insert(code.to_owned(), programme.id.clone());
        Ok(programme.id)
    }

    /// Imports `records` through `ImportPeople` streams, several at once.
    async fn import(&mut self, records: Vec<pb::PersonRecord>) -> anyhow::Result<()> {
        let started = Instant::now();
        let total = records.len();
        let chunks: Vec<Vec<pb::PersonRecord>> = records
            .chunks(IMPORT_STREAM_RECORDS)
            .map(<[pb::PersonRecord]>::to_vec)
            .collect();
        let client = self.clients.people.clone();
        let counters = self.counters.clone();
        let done = Arc::new(AtomicU64::new(0));
        let streams = chunks.len();
        let outcomes: Vec<pb::ImportPeopleResponse> = stream::iter(chunks)
            .map(|chunk| {
                let mut client = client.clone();
                let done = done.clone();
                async move {
                    let count = chunk.len();
                    let mut messages: Vec<pb::ImportPeopleRequest> = chunk
                        .into_iter()
                        .map(|person| pb::ImportPeopleRequest {
                            message: Some(pb::import_people_request::Message::Person(person)),
                        })
                        .collect();
                    messages.push(pb::ImportPeopleRequest {
                        message: Some(pb::import_people_request::Message::Commit(
                            pb::ImportCommit {
                                record_count: count as i64,
                            },
                        )),
                    });
                    let response = client
                        .import_people(stream::iter(messages))
                        .await
                        .context("importing people")?
                        .into_inner();
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(4) || finished as usize == streams {
                        eprintln!("      imported {finished} of {streams} streams");
                    }
                    anyhow::Ok(response)
                }
            })
            .buffer_unordered(self.args.concurrency.clamp(1, 4))
            .try_collect()
            .await?;
        let mut failed = 0;
        for outcome in &outcomes {
            let counts = outcome.counts.unwrap_or_default();
            failed += counts.failed;
            for error in outcome.errors.iter().take(5) {
                eprintln!(
                    "      refused {}: {} {}",
                    error.key, error.reason, error.message
                );
            }
        }
        Counters::add(&counters.people, total - failed as usize);
        Counters::add(&counters.refused, failed as usize);
        self.import_seconds += started.elapsed().as_secs_f64();
        self.import_rows += total as u64;
        Ok(())
    }

    /// Returns (external id, id) of the people in `organization`'s subtree whose external id starts with `prefix`.
    async fn people_in(
        client: &PersonServiceClient<Authed>,
        organization_id: &str,
        prefix: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .clone()
                .list_people(pb::ListPeopleRequest {
                    page_size: 1000,
                    page_token,
                    organization_subtree: organization_id.to_owned(),
                    ..Default::default()
                })
                .await
                .context("listing people")?
                .into_inner();
            found.extend(
                page.people
                    .into_iter()
                    .filter(|person| person.external_id.starts_with(prefix))
                    .map(|person| (person.external_id, person.id)),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        found.sort();
        Ok(found)
    }

    // ---- demo ------------------------------------------------------------------------------

    async fn demo_organizations(&mut self) -> anyhow::Result<()> {
        use OrganizationKind as K;
        for (code, name, _) in MINISTRIES {
            self.organization(code, name, K::Ministry, None).await?;
        }
        let plan: [(&str, &str, K, Option<&str>); 14] = [
            (
                "JDN",
                "National Digital Department (JDN)",
                K::Department,
                Some("KD"),
            ),
            ("MYGOVUC", "MyGovUC unit", K::Unit, Some("JDN")),
            ("NAIO", "National AI Office", K::Agency, Some("KD")),
            ("JPA", "Public Service Department (JPA)", K::Agency, None),
            (
                "INTAN",
                "National Institute of Public Administration (INTAN)",
                K::TrainingCentre,
                Some("JPA"),
            ),
            (
                "MAMPU",
                "Malaysian Administrative Modernisation and Management Planning Unit (MAMPU)",
                K::Agency,
                None,
            ),
            (
                "KESUMA",
                "Ministry of Human Resources (KESUMA)",
                K::Ministry,
                None,
            ),
            (
                "JTM",
                "Manpower Department (JTM)",
                K::Department,
                Some("KESUMA"),
            ),
            (
                "ILP",
                "Industrial Training Institute",
                K::TrainingCentre,
                Some("JTM"),
            ),
            ("CLOUD", "Cloud vendor", K::Company, None),
            ("TELCO", "Telecom vendor", K::Company, None),
            ("UNI", "Partner university", K::University, None),
            ("HOST", "Smart City Authority (abroad)", K::Partner, None),
            ("PRIV", "Private-sector participants", K::Company, None),
        ];
        for (code, name, kind, parent) in plan {
            self.organization(code, name, kind, parent).await?;
        }
        Ok(())
    }

    async fn demo_programmes(&mut self) -> anyhow::Result<()> {
        self.demo_edl().await?;
        self.demo_future_fit().await?;
        self.demo_tvet().await?;
        self.demo_ai_at_work().await?;
        self.demo_dle().await?;
        Ok(())
    }

    /// Executive Digital Leadership: one cohort of 55, 35 public and 20 private seats.
    async fn demo_edl(&mut self) -> anyhow::Result<()> {
        self.course(
            "EDL-1",
            "Executive Digital Leadership",
            "MAMPU",
            &[
                (
                    "Digital government strategy",
                    &[
                        (Kind::Lecture, Mode::InPerson),
                        (Kind::CaseStudy, Mode::Blended),
                    ],
                ),
                (
                    "Leading transformation",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::Simulation, Mode::InPerson),
                    ],
                ),
                ("Capstone", &[(Kind::Assessment, Mode::InPerson)]),
            ],
        )
        .await?;
        self.programme(
            "EDL",
            "Executive Digital Leadership",
            "MAMPU",
            &[],
            &[("Three months", &["EDL-1"], "MAMPU", 90)],
        )
        .await?;
        let mut records: Vec<pb::PersonRecord> = (0..35)
            .map(|index| {
                let ministry = MINISTRIES[index % MINISTRIES.len()].0;
                self.person(&format!("EDL-PUB-{index:02}"), ministry, pb::Sector::Public)
            })
            .collect();
        records.extend((0..20).map(|index| {
            self.person(&format!("EDL-PRIV-{index:02}"), "PRIV", pb::Sector::Private)
        }));
        self.import(records).await?;
        let mut members = Vec::new();
        for (code, _, _) in MINISTRIES {
            members.extend(
                Self::people_in(
                    &self.clients.people,
                    &self.organization_id(code)?,
                    "EDL-PUB-",
                )
                .await?,
            );
        }
        members.extend(
            Self::people_in(
                &self.clients.people,
                &self.organization_id("PRIV")?,
                "EDL-PRIV-",
            )
            .await?,
        );
        let cohort = pb::Cohort {
            name: "EDL cohort 1".to_owned(),
            start_date: "2025-07-01".to_owned(),
            end_date: "2025-09-30".to_owned(),
            capacity: 55,
            sector_seats: vec![
                pb::SectorSeats {
                    sector: pb::Sector::Public.into(),
                    seats: 35,
                },
                pb::SectorSeats {
                    sector: pb::Sector::Private.into(),
                    seats: 20,
                },
            ],
            ..Default::default()
        };
        let seeded = self.cohort("EDL", "edl/1", cohort, &members).await?;
        self.spread_progress(&seeded, &["EDL-1"], Spread::Running)
            .await?;
        Ok(())
    }

    /// Future-Fit Public Services: 20 officers of 14 ministries, a month at the university then five months abroad.
    async fn demo_future_fit(&mut self) -> anyhow::Result<()> {
        self.course(
            "FFPS-UNI",
            "AI and cybersecurity intensive",
            "UNI",
            &[
                (
                    "Generative AI",
                    &[(Kind::Lecture, Mode::InPerson), (Kind::Lab, Mode::InPerson)],
                ),
                (
                    "AI governance",
                    &[
                        (Kind::Lecture, Mode::InPerson),
                        (Kind::Simulation, Mode::InPerson),
                    ],
                ),
                ("Assessment", &[(Kind::Assessment, Mode::Online)]),
            ],
        )
        .await?;
        self.course(
            "FFPS-ATTACH",
            "Industry attachment abroad",
            "TELCO",
            &[
                (
                    "Smart cities",
                    &[
                        (Kind::FieldVisit, Mode::InPerson),
                        (Kind::CaseStudy, Mode::Blended),
                    ],
                ),
                (
                    "Digital governance and cybersecurity",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::IndustryAttachment, Mode::InPerson),
                    ],
                ),
            ],
        )
        .await?;
        self.programme(
            "FFPS-2025",
            "Future-Fit Public Services (AI and cybersecurity)",
            "JPA",
            &["TELCO", "UNI"],
            &[
                (
                    "1 month at the university",
                    &["FFPS-UNI"],
                    "University campus",
                    30,
                ),
                (
                    "5-month industry attachment",
                    &["FFPS-ATTACH"],
                    "Abroad",
                    150,
                ),
            ],
        )
        .await?;
        let mut records = Vec::new();
        for (index, (code, _, _)) in MINISTRIES.iter().enumerate() {
            let count = if index < 6 { 2 } else { 1 };
            for number in 0..count {
                records.push(self.person(&format!("FF-{code}-{number}"), code, pb::Sector::Public));
            }
        }
        self.import(records).await?;
        let mut members = Vec::new();
        let mut eligible = Vec::new();
        for (code, _, _) in MINISTRIES {
            let id = self.organization_id(code)?;
            members.extend(Self::people_in(&self.clients.people, &id, "FF-").await?);
            eligible.push(id);
        }
        let cohort = pb::Cohort {
            name: "Cohort 1 (May to November)".to_owned(),
            start_date: "2025-05-01".to_owned(),
            end_date: "2025-11-30".to_owned(),
            capacity: 20,
            eligible_organization_ids: eligible,
            ..Default::default()
        };
        let seeded = self.cohort("FFPS-2025", "ffps/1", cohort, &members).await?;
        // Everyone finished the university month; the attachment is under way.
        self.spread_progress(&seeded, &["FFPS-UNI"], Spread::Done)
            .await?;
        self.spread_progress(&seeded, &["FFPS-ATTACH"], Spread::Running)
            .await?;
        Ok(())
    }

    /// TVET Learning Centre: a master trainer, three candidate trainers, 2,000 trainees.
    async fn demo_tvet(&mut self) -> anyhow::Result<()> {
        self.course(
            "TVET-5G",
            "Certified telecom: fibre and 5G",
            "TELCO",
            &[
                (
                    "Fibre optics",
                    &[(Kind::Lecture, Mode::InPerson), (Kind::Lab, Mode::InPerson)],
                ),
                (
                    "5G radio",
                    &[(Kind::Lecture, Mode::InPerson), (Kind::Lab, Mode::InPerson)],
                ),
                ("Certification exam", &[(Kind::Assessment, Mode::InPerson)]),
            ],
        )
        .await?;
        self.programme(
            "TVET-TLC",
            "TVET Learning Centre",
            "KESUMA",
            &["TELCO"],
            &[(
                "Telecom modules",
                &["TVET-5G"],
                "Industrial Training Institute",
                120,
            )],
        )
        .await?;
        let mut records = vec![self.person("TVET-MASTER-1", "TELCO", pb::Sector::Private)];
        records
            .extend((1..=3).map(|index| {
                self.person(&format!("TVET-CAND-{index}"), "JTM", pb::Sector::Public)
            }));
        records.extend((0..2000).map(|index| {
            // Students and educators are public; industry engineers private.
            let sector = if index % 5 == 4 {
                pb::Sector::Private
            } else {
                pb::Sector::Public
            };
            self.person(&format!("TVET-{index:04}"), "ILP", sector)
        }));
        self.import(records).await?;
        let trainees: Vec<(String, String)> =
            Self::people_in(&self.clients.people, &self.organization_id("ILP")?, "TVET-").await?;
        let cohort = pb::Cohort {
            name: "Batch 1".to_owned(),
            start_date: "2025-03-03".to_owned(),
            end_date: "2025-07-31".to_owned(),
            capacity: 2000,
            ..Default::default()
        };
        let seeded = self.cohort("TVET-TLC", "tvet/1", cohort, &trainees).await?;
        self.spread_progress(&seeded, &["TVET-5G"], Spread::Running)
            .await?;
        Ok(())
    }

    /// AI At Work 2.0: 200 change ambassadors trained, then a pilot of 270 officers (91% completed the survey).
    async fn demo_ai_at_work(&mut self) -> anyhow::Result<()> {
        self.course(
            "AIW-TTT",
            "AI At Work: train the trainer (5 days)",
            "CLOUD",
            &[
                (
                    "Generative AI for content and summaries",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::Lab, Mode::InPerson),
                    ],
                ),
                (
                    "Data analysis and meeting notes",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::Lab, Mode::InPerson),
                    ],
                ),
                (
                    "Teaching it back",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::Assessment, Mode::InPerson),
                    ],
                ),
            ],
        )
        .await?;
        self.course_with_survey(
            "AIW-OFFICER",
            "AI At Work for officers",
            "CLOUD",
            &[
                (
                    "AI at work",
                    &[
                        (Kind::SelfStudy, Mode::Online),
                        (Kind::Workshop, Mode::Blended),
                    ],
                ),
                ("Pilot survey", &[(Kind::Survey, Mode::Online)]),
            ],
            &pilot_questions(),
        )
        .await?;
        self.programme(
            "AIW-2-TTT",
            "AI At Work 2.0: change ambassadors",
            "KD",
            &["CLOUD"],
            &[("Train the trainers", &["AIW-TTT"], "JDN", 5)],
        )
        .await?;
        self.programme(
            "AIW-2",
            "AI At Work 2.0",
            "KD",
            &["CLOUD"],
            &[("Cascade", &["AIW-OFFICER"], "Departments", 60)],
        )
        .await?;
        let mut records: Vec<pb::PersonRecord> = (0..200)
            .map(|index| self.person(&format!("AMB-{index:03}"), "MYGOVUC", pb::Sector::Public))
            .collect();
        records.extend(
            (0..270)
                .map(|index| self.person(&format!("PILOT-{index:03}"), "JDN", pb::Sector::Public)),
        );
        self.import(records).await?;
        let ambassadors = Self::people_in(
            &self.clients.people,
            &self.organization_id("MYGOVUC")?,
            "AMB-",
        )
        .await?;
        let pilot = Self::people_in(
            &self.clients.people,
            &self.organization_id("JDN")?,
            "PILOT-",
        )
        .await?;
        let cohort = pb::Cohort {
            name: "Change ambassadors".to_owned(),
            start_date: "2025-02-10".to_owned(),
            end_date: "2025-02-14".to_owned(),
            capacity: 200,
            ..Default::default()
        };
        let seeded = self
            .cohort("AIW-2-TTT", "aiw/ambassadors", cohort, &ambassadors)
            .await?;
        self.spread_progress(&seeded, &["AIW-TTT"], Spread::Done)
            .await?;
        let cohort = pb::Cohort {
            name: "Pilot (270 officers)".to_owned(),
            start_date: "2025-03-03".to_owned(),
            end_date: "2025-04-30".to_owned(),
            capacity: 270,
            eligible_organization_ids: vec![self.organization_id("KD")?],
            ..Default::default()
        };
        let seeded = self.cohort("AIW-2", "aiw/pilot", cohort, &pilot).await?;
        self.pilot_survey(&seeded).await
    }

    /// The pilot's 270 officers finish the course and answer its survey: 246 (91%) saved time,
    /// 3.25 hours a week on average over all 270 (the figures of DOMAIN.md).
    async fn pilot_survey(&self, seeded: &SeededCohort) -> anyhow::Result<()> {
        let info = self
            .courses
            .get("AIW-OFFICER")
            .context("course AIW-OFFICER not seeded")?;
        let (surveys, lessons): (Vec<ActivityInfo>, Vec<ActivityInfo>) = info
            .activities
            .iter()
            .cloned()
            .partition(|activity| activity.kind == Kind::Survey);
        let survey = surveys
            .first()
            .context("AIW-OFFICER has no survey activity")?
            .id
            .clone();
        let mut learners = seeded.enrollments.clone();
        learners.sort();
        let mut events = Vec::new();
        for (external_id, enrollment_id) in &learners {
            events.extend(learner_events(
                self.seed,
                &format!("{}/AIW-OFFICER", seeded.label),
                external_id,
                enrollment_id,
                &lessons,
                Spread::Done,
            ));
        }
        record_events(&self.clients, &self.counters, events).await?;
        let answers = learners
            .iter()
            .enumerate()
            .map(|(index, (_, enrollment_id))| (enrollment_id.clone(), pilot_answers(index)));
        let submitted: Vec<_> = stream::iter(answers)
            .map(|(enrollment_id, answers)| {
                let client = self.clients.surveys.clone();
                let request = pb::SubmitSurveyResponseRequest {
                    enrollment_id,
                    activity_id: survey.clone(),
                    answers,
                };
                // Idempotent per learner and survey: a second seed gets the first answer back.
                retry(move || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.submit_survey_response(request).await }
                })
            })
            .buffer_unordered(self.args.concurrency.max(1))
            .try_collect()
            .await
            .context("submitting the pilot's survey responses")?;
        Counters::add(&self.counters.events, submitted.len());
        Ok(())
    }

    /// Digital Leadership Excellence: cohort 1 finished and closed, cohort 2 running.
    async fn demo_dle(&mut self) -> anyhow::Result<()> {
        self.course(
            "DLE",
            "Digital Leadership Excellence",
            "INTAN",
            &[
                (
                    "Leading digital change",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::CaseStudy, Mode::InPerson),
                    ],
                ),
                ("Judging panels", &[(Kind::Workshop, Mode::InPerson)]),
            ],
        )
        .await?;
        self.programme(
            "DLE",
            "Digital Leadership Excellence",
            "INTAN",
            &[],
            &[("Leadership", &["DLE"], "INTAN", 60)],
        )
        .await?;
        let records: Vec<pb::PersonRecord> = (0..55)
            .map(|index| {
                let ministry = MINISTRIES[(index * 5) % MINISTRIES.len()].0;
                self.person(&format!("DLE-{index:02}"), ministry, pb::Sector::Public)
            })
            .collect();
        self.import(records).await?;
        let mut leaders = Vec::new();
        for (code, _, _) in MINISTRIES {
            leaders.extend(
                Self::people_in(&self.clients.people, &self.organization_id(code)?, "DLE-").await?,
            );
        }
        leaders.sort();
        let (first, second) = leaders.split_at(25.min(leaders.len()));
        let cohort = pb::Cohort {
            name: "Cohort 1".to_owned(),
            start_date: "2024-09-02".to_owned(),
            end_date: "2024-11-29".to_owned(),
            capacity: 30,
            ..Default::default()
        };
        let seeded = self.cohort("DLE", "dle/1", cohort, first).await?;
        self.spread_progress(&seeded, &["DLE"], Spread::Done)
            .await?;
        self.set_cohort_state(&seeded.id, pb::CohortState::Closed)
            .await?;
        let cohort = pb::Cohort {
            name: "Cohort 2".to_owned(),
            start_date: "2025-06-02".to_owned(),
            end_date: "2025-08-29".to_owned(),
            capacity: 30,
            ..Default::default()
        };
        let seeded = self.cohort("DLE", "dle/2", cohort, second).await?;
        self.set_cohort_state(&seeded.id, pb::CohortState::Running)
            .await?;
        self.spread_progress(&seeded, &["DLE"], Spread::Running)
            .await?;
        Ok(())
    }

    fn person(
        &self,
        external_id: &str,
        organization_code: &str,
        sector: pb::Sector,
    ) -> pb::PersonRecord {
        person_record(self.seed, external_id, organization_code, sector)
    }

    /// Creates and opens a cohort of `programme` and enrols `members`; returns it with its enrolments.
    async fn cohort(
        &mut self,
        programme: &str,
        label: &str,
        settings: pb::Cohort,
        members: &[(String, String)],
    ) -> anyhow::Result<SeededCohort> {
        let programme_id = self
            .programmes
            .get(programme)
            .cloned()
            .with_context(|| format!("programme {programme} not seeded"))?;
        let seeded = create_cohort(
            &self.clients,
            self.seed,
            &self.counters,
            programme,
            &programme_id,
            label,
            settings,
            members,
        )
        .await?;
        self.cohorts.push(seeded.clone());
        Ok(seeded)
    }

    async fn set_cohort_state(&self, id: &str, state: pb::CohortState) -> anyhow::Result<()> {
        let mut client = self.clients.programmes.clone();
        let current = client
            .get_cohort(pb::GetCohortRequest { id: id.to_owned() })
            .await?
            .into_inner();
        if current.state() == state {
            return Ok(());
        }
        client
            .change_cohort_state(pb::ChangeCohortStateRequest {
                id: id.to_owned(),
                state: state.into(),
                etag: current.etag,
            })
            .await
            .with_context(|| format!("moving cohort {id} to {state:?}"))?;
        Ok(())
    }

    /// Records progress on `courses` for every learner of `cohort`, spread as `spread` says.
    async fn spread_progress(
        &self,
        cohort: &SeededCohort,
        courses: &[&str],
        spread: Spread,
    ) -> anyhow::Result<()> {
        let mut events = Vec::new();
        for course in courses {
            let info = self
                .courses
                .get(*course)
                .with_context(|| format!("course {course} not seeded"))?;
            for (external_id, enrollment_id) in &cohort.enrollments {
                events.extend(learner_events(
                    self.seed,
                    &format!("{}/{course}", cohort.label),
                    external_id,
                    enrollment_id,
                    &info.activities,
                    spread,
                ));
            }
        }
        record_events(&self.clients, &self.counters, events).await
    }

    // ---- demo: train the trainer -------------------------------------------------------------

    /// Train-the-trainer in the demo: the TVET vendor's master trainer certified, the three JTM
    /// candidates taken through supervised co-deliveries (two certified, one still practising)
    /// and the certified two delivering on their own; the AI At Work master trainer certified,
    /// delivering the five-day course to the 200 change ambassadors, who are certified and deliver
    /// to the pilot's officers. One certificate (a one-month safety refresher) is close to expiry,
    /// so its reminder and renewal candidacy show at once.
    async fn demo_certification(&mut self) -> anyhow::Result<()> {
        self.demo_tvet_certification().await?;
        self.demo_ai_at_work_certification().await?;
        // Announce what is due now rather than at the server's next sweep.
        let settings = &self.certification;
        let now = settings.clock.now();
        let reminded = self
            .store
            .publish_certificate_reminders(now, &settings.expiry_reminder_days.0)
            .await
            .context("publishing expiry reminders")?;
        let renewals = match settings.renewal_open_days.0 {
            Some(days) => self
                .store
                .open_renewal_candidacies(now, days)
                .await
                .context("opening renewal candidacies")?,
            None => 0,
        };
        eprintln!(
            "      {reminded} expiry reminders published, {renewals} renewal candidacies opened"
        );
        Ok(())
    }

    async fn demo_tvet_certification(&mut self) -> anyhow::Result<()> {
        let course = self
            .courses
            .get("TVET-5G")
            .cloned()
            .context("the TVET course is not seeded")?;
        let cohort = self
            .cohorts
            .iter()
            .find(|cohort| cohort.label == "tvet/1")
            .cloned()
            .context("the TVET cohort is not seeded")?;
        let telco = self.organization_id("TELCO")?;
        let master_track = self
            .track(pb::CertificationTrack {
                code: "TVET-MASTER".to_owned(),
                title: "Certified telecom: master trainer".to_owned(),
                level: pb::TrackLevel::MasterTrainer.into(),
                qualifies_course_ids: vec![course.course_id.clone()],
                requirements: Some(pb::TrackRequirements::default()),
                validity_months: 36,
                scope: pb::TrackScope::Any.into(),
                issuer_organization_id: telco.clone(),
                ..Default::default()
            })
            .await?;
        let trainer_track = self
            .track(pb::CertificationTrack {
                code: "TVET-TRAINER".to_owned(),
                title: "Certified telecom: JTM trainer".to_owned(),
                level: pb::TrackLevel::Trainer.into(),
                qualifies_course_ids: vec![course.course_id.clone()],
                requirements: Some(pb::TrackRequirements {
                    trainer_course_version_ids: Vec::new(),
                    min_assessment_score: 70,
                    supervised_deliveries_required: 2,
                    assessor_approval_required: true,
                }),
                validity_months: 24,
                scope: pb::TrackScope::Any.into(),
                issuer_organization_id: telco.clone(),
                ..Default::default()
            })
            .await?;
        let safety_track = self
            .track(pb::CertificationTrack {
                code: "TVET-SAFETY".to_owned(),
                title: "Fibre splicing safety (monthly refresher)".to_owned(),
                level: pb::TrackLevel::Trainer.into(),
                qualifies_module_ids: vec![course.module_ids[0].clone()],
                requirements: Some(pb::TrackRequirements::default()),
                validity_months: 1,
                scope: pb::TrackScope::Any.into(),
                issuer_organization_id: telco.clone(),
                ..Default::default()
            })
            .await?;
        let master = Self::people_in(&self.clients.people, &telco, "TVET-MASTER-1")
            .await?
            .into_iter()
            .next()
            .map(|(_, id)| id)
            .context("the TVET master trainer is not seeded")?;
        certify(
            &self.clients,
            self.seed,
            &master_track,
            &master,
            "TVET-MASTER-1",
        )
        .await?;
        Counters::add(&self.counters.certificates, 1);
        let jtm = self.organization_id("JTM")?;
        let candidates: Vec<String> = Self::people_in(&self.clients.people, &jtm, "TVET-CAND-")
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        if candidates.len() != 3 {
            bail!("expected the 3 TVET candidates, found {}", candidates.len());
        }
        let trainees: Vec<String> =
            Self::people_in(&self.clients.people, &self.organization_id("ILP")?, "TVET-")
                .await?
                .into_iter()
                .map(|(_, id)| id)
                .collect();
        let opened = self
            .open_candidacies(&trainer_track, &candidates, "tvet/trainers")
            .await?;
        let ids: Vec<String> = opened
            .iter()
            .map(|candidacy| candidacy.id.clone())
            .collect();
        let practising: HashSet<String> = self
            .advance_candidacies(
                pb::CandidacyStep::BeginSupervisedPractice,
                &ids,
                "the candidates co-deliver under the master trainer",
                "tvet/trainers/practice",
            )
            .await?
            .into_iter()
            // A re-run finds the first two certified: their sign-offs are done.
            .filter(|candidacy| candidacy.state() == pb::CandidacyState::SupervisedPractice)
            .map(|candidacy| candidacy.person_id)
            .collect();
        // Two co-delivered sessions: all three candidates at the first, two at the second.
        let present = |from: usize| trainees[from..(from + 40).min(trainees.len())].to_vec();
        let mut co_delivered = Vec::new();
        for (number, co_trainers) in [candidates.clone(), candidates[..2].to_vec()]
            .into_iter()
            .enumerate()
        {
            let session_id = deliver_session(
                &self.clients,
                &self.counters,
                &PlannedSession {
                    request_id: stable_id(self.seed, &format!("session/tvet/co-delivery/{number}")),
                    cohort_id: cohort.id.clone(),
                    module_id: course.module_ids[number].clone(),
                    lead_trainer_id: master.clone(),
                    co_trainer_ids: co_trainers.clone(),
                    start: utc(2025, 3, 10 + 7 * number as u32, 9),
                    end: utc(2025, 3, 10 + 7 * number as u32, 17),
                    location: "Industrial Training Institute, lab 2".to_owned(),
                    present: present(40 * number),
                    absent: Vec::new(),
                },
            )
            .await?;
            co_delivered.push((session_id, co_trainers));
        }
        for (session_id, co_trainers) in &co_delivered {
            for candidate_id in co_trainers.iter().filter(|id| practising.contains(*id)) {
                let request = pb::RecordSupervisedDeliveryRequest {
                    session_id: session_id.clone(),
                    candidate_id: candidate_id.clone(),
                    outcome: pb::SupervisedDeliveryOutcome::Passed.into(),
                    notes: "co-delivered the module; signed off by the master trainer".to_owned(),
                };
                retry(|| {
                    let mut client = self.clients.certification.clone();
                    let request = request.clone();
                    async move { client.record_supervised_delivery(request).await }
                })
                .await
                .with_context(|| format!("signing off the co-delivery of {candidate_id}"))?;
            }
        }
        // The first two have their two co-deliveries: assessed and certified in one call each.
        // The third, with one, is still in supervised practice.
        let submitted = self
            .advance_candidacies(
                pb::CandidacyStep::SubmitForAssessment,
                &ids[..2],
                "two supervised deliveries signed off",
                "tvet/trainers/submit",
            )
            .await?;
        let mut certified = Vec::new();
        for (index, candidacy) in submitted.iter().enumerate() {
            certified.push(candidacy.person_id.clone());
            if candidacy.state() == pb::CandidacyState::Certified {
                continue;
            }
            self.assess_and_issue(
                candidacy,
                80 + 6 * index as i32,
                "practical assessment of a co-delivered module",
            )
            .await?;
            Counters::add(&self.counters.certificates, 1);
        }
        // The certified trainers deliver on their own: 40 trainees each.
        for (number, trainer_id) in certified.iter().enumerate() {
            deliver_session(
                &self.clients,
                &self.counters,
                &PlannedSession {
                    request_id: stable_id(self.seed, &format!("session/tvet/own/{number}")),
                    cohort_id: cohort.id.clone(),
                    module_id: course.module_ids[number].clone(),
                    lead_trainer_id: trainer_id.clone(),
                    co_trainer_ids: Vec::new(),
                    start: utc(2025, 4, 7 + 7 * number as u32, 9),
                    end: utc(2025, 4, 7 + 7 * number as u32, 17),
                    location: "Industrial Training Institute, lab 3".to_owned(),
                    present: present(80 + 40 * number),
                    absent: Vec::new(),
                },
            )
            .await?;
        }
        // A monthly safety refresher: the certificate the reminder and the renewal are about.
        certify(
            &self.clients,
            self.seed,
            &safety_track,
            &certified[0],
            "TVET-CAND-1",
        )
        .await?;
        Counters::add(&self.counters.certificates, 1);
        eprintln!(
            "      TVET: master trainer certified; 2 of 3 JTM candidates certified after supervised co-deliveries, 1 practising"
        );
        Ok(())
    }

    async fn demo_ai_at_work_certification(&mut self) -> anyhow::Result<()> {
        let ttt = self
            .courses
            .get("AIW-TTT")
            .cloned()
            .context("the ambassadors' course is not seeded")?;
        let officer_course = self
            .courses
            .get("AIW-OFFICER")
            .cloned()
            .context("the officers' course is not seeded")?;
        let cloud = self.organization_id("CLOUD")?;
        let issuer = self.organization_id("KD")?;
        self.import(vec![self.person(
            "AIW-MASTER-1",
            "CLOUD",
            pb::Sector::Private,
        )])
        .await?;
        let master = Self::people_in(&self.clients.people, &cloud, "AIW-MASTER-1")
            .await?
            .into_iter()
            .next()
            .map(|(_, id)| id)
            .context("the AI At Work master trainer was imported but is not listed")?;
        let master_track = self
            .track(pb::CertificationTrack {
                code: "AIW-MASTER".to_owned(),
                title: "AI At Work: master trainer".to_owned(),
                level: pb::TrackLevel::MasterTrainer.into(),
                qualifies_course_ids: vec![ttt.course_id.clone(), officer_course.course_id.clone()],
                requirements: Some(pb::TrackRequirements::default()),
                validity_months: 36,
                scope: pb::TrackScope::Any.into(),
                issuer_organization_id: issuer.clone(),
                ..Default::default()
            })
            .await?;
        let ambassador_track = self
            .track(pb::CertificationTrack {
                code: "AIW-AMB".to_owned(),
                title: "AI At Work: change ambassador".to_owned(),
                level: pb::TrackLevel::Ambassador.into(),
                qualifies_course_ids: vec![officer_course.course_id.clone()],
                requirements: Some(pb::TrackRequirements {
                    trainer_course_version_ids: vec![ttt.version_id.clone()],
                    min_assessment_score: 70,
                    supervised_deliveries_required: 0,
                    assessor_approval_required: true,
                }),
                validity_months: 24,
                scope: pb::TrackScope::Any.into(),
                issuer_organization_id: issuer,
                ..Default::default()
            })
            .await?;
        certify(
            &self.clients,
            self.seed,
            &master_track,
            &master,
            "AIW-MASTER-1",
        )
        .await?;
        Counters::add(&self.counters.certificates, 1);
        let ambassadors: Vec<String> = Self::people_in(
            &self.clients.people,
            &self.organization_id("MYGOVUC")?,
            "AMB-",
        )
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
        let ambassadors_cohort = self
            .cohorts
            .iter()
            .find(|cohort| cohort.label == "aiw/ambassadors")
            .cloned()
            .context("the ambassadors' cohort is not seeded")?;
        // The master trainer delivers the five-day course: the ambassadors are their trainees.
        deliver_session(
            &self.clients,
            &self.counters,
            &PlannedSession {
                request_id: stable_id(self.seed, "session/aiw/ambassadors"),
                cohort_id: ambassadors_cohort.id.clone(),
                module_id: ttt.module_ids[0].clone(),
                lead_trainer_id: master.clone(),
                co_trainer_ids: Vec::new(),
                start: utc(2025, 2, 10, 9),
                end: utc(2025, 2, 14, 17),
                location: "JDN, Cyberjaya".to_owned(),
                present: ambassadors.clone(),
                absent: Vec::new(),
            },
        )
        .await?;
        // The cohort in three batch calls, then one assessment (certifying) per ambassador.
        let opened = self
            .open_candidacies(&ambassador_track, &ambassadors, "aiw/ambassadors")
            .await?;
        let ids: Vec<String> = opened
            .iter()
            .map(|candidacy| candidacy.id.clone())
            .collect();
        self.advance_candidacies(
            pb::CandidacyStep::BeginSupervisedPractice,
            &ids,
            "five-day course completed",
            "aiw/ambassadors/practice",
        )
        .await?;
        let submitted = self
            .advance_candidacies(
                pb::CandidacyStep::SubmitForAssessment,
                &ids,
                "ready for the teach-back",
                "aiw/ambassadors/submit",
            )
            .await?;
        let this = &*self;
        let issued: Vec<usize> = stream::iter(submitted.iter().enumerate())
            .map(|(index, candidacy)| async move {
                if candidacy.state() == pb::CandidacyState::Certified {
                    return Ok(0);
                }
                let score =
                    70 + (stable_u64(this.seed, &format!("aiw/amb/{index}/score")) % 31) as i32;
                this.assess_and_issue(
                    candidacy,
                    score,
                    "teach-back assessed by the master trainer",
                )
                .await
                .map(|()| 1)
            })
            .buffer_unordered(self.args.concurrency.max(1))
            .try_collect()
            .await?;
        Counters::add(&self.counters.certificates, issued.iter().sum());
        // Nine ambassadors each deliver the officers' workshop to 30 of the pilot's officers.
        let pilot = self
            .cohorts
            .iter()
            .find(|cohort| cohort.label == "aiw/pilot")
            .cloned()
            .context("the pilot cohort is not seeded")?;
        let officers: Vec<String> = Self::people_in(
            &self.clients.people,
            &self.organization_id("JDN")?,
            "PILOT-",
        )
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
        for (number, group) in officers.chunks(30).enumerate() {
            deliver_session(
                &self.clients,
                &self.counters,
                &PlannedSession {
                    request_id: stable_id(self.seed, &format!("session/aiw/pilot/{number}")),
                    cohort_id: pilot.id.clone(),
                    module_id: officer_course.module_ids[0].clone(),
                    lead_trainer_id: ambassadors[number].clone(),
                    co_trainer_ids: Vec::new(),
                    start: utc(2025, 3, 10 + number as u32, 9),
                    end: utc(2025, 3, 10 + number as u32, 12),
                    location: "JDN, Putrajaya".to_owned(),
                    present: group.to_vec(),
                    absent: Vec::new(),
                },
            )
            .await?;
        }
        eprintln!(
            "      AI At Work: master trainer certified; {} ambassadors certified; {} officers trained by 9 of them",
            ambassadors.len(),
            officers.len()
        );
        Ok(())
    }

    /// Opens the candidacies of `people` on `track` in one call, already in TRAINING (a replay
    /// returns them as they are now).
    async fn open_candidacies(
        &self,
        track: &pb::CertificationTrack,
        people: &[String],
        label: &str,
    ) -> anyhow::Result<Vec<pb::Candidacy>> {
        let request = pb::BatchCreateCandidaciesRequest {
            track_id: track.id.clone(),
            requests: people
                .iter()
                .map(|person_id| pb::CreateCandidacyRequest {
                    person_id: person_id.clone(),
                    ..Default::default()
                })
                .collect(),
            start_training: true,
            reason: "enrolled in the trainer course".to_owned(),
            request_id: stable_id(self.seed, &format!("candidacies/{label}")),
        };
        Ok(retry(|| {
            let mut client = self.clients.certification.clone();
            let request = request.clone();
            async move { client.batch_create_candidacies(request).await }
        })
        .await
        .with_context(|| format!("opening the candidacies {label} on {}", track.code))?
        .into_inner()
        .candidacies)
    }

    /// Takes candidacies `ids` one `step` in one call (a replay returns them as they are now).
    async fn advance_candidacies(
        &self,
        step: pb::CandidacyStep,
        ids: &[String],
        reason: &str,
        label: &str,
    ) -> anyhow::Result<Vec<pb::Candidacy>> {
        let request = pb::BatchAdvanceCandidaciesRequest {
            step: step.into(),
            candidacy_ids: ids.to_vec(),
            etags: Vec::new(),
            reason: reason.to_owned(),
            request_id: stable_id(self.seed, &format!("advance/{label}")),
        };
        Ok(retry(|| {
            let mut client = self.clients.certification.clone();
            let request = request.clone();
            async move { client.batch_advance_candidacies(request).await }
        })
        .await
        .with_context(|| format!("moving the candidacies {label} ({step:?})"))?
        .into_inner()
        .candidacies)
    }

    /// Records a passing assessment of `candidacy` that issues its certificate in the same call.
    async fn assess_and_issue(
        &self,
        candidacy: &pb::Candidacy,
        score: i32,
        reason: &str,
    ) -> anyhow::Result<()> {
        let request = pb::RecordAssessmentRequest {
            id: candidacy.id.clone(),
            score,
            approved: true,
            reason: reason.to_owned(),
            etag: String::new(),
            issue_certificate: true,
        };
        retry(|| {
            let mut client = self.clients.certification.clone();
            let request = request.clone();
            async move { client.record_assessment(request).await }
        })
        .await
        .with_context(|| format!("certifying candidacy {}", candidacy.id))?;
        Ok(())
    }

    // ---- national --------------------------------------------------------------------------

    async fn national_organizations(&mut self) -> anyhow::Result<()> {
        for (code, name, _) in MINISTRIES {
            self.organization(code, name, OrganizationKind::Ministry, None)
                .await?;
            for department in 1..=DEPARTMENTS_PER_MINISTRY {
                let department_code = department_code(code, department);
                self.organization(
                    &department_code,
                    &format!("{name}, department {department}"),
                    OrganizationKind::Department,
                    Some(code),
                )
                .await?;
                for unit in 1..=UNITS_PER_DEPARTMENT {
                    self.organization(
                        &format!("{department_code}-U{unit:02}"),
                        &format!("{name}, department {department}, unit {unit}"),
                        OrganizationKind::Unit,
                        Some(&department_code),
                    )
                    .await?;
                }
            }
        }
        self.organization("CLOUD", "Cloud vendor", OrganizationKind::Company, None)
            .await?;
        Ok(())
    }

    async fn national_catalogue(&mut self) -> anyhow::Result<()> {
        self.course(
            "AIW-NAT-TTT",
            "AI At Work: change ambassadors (5 days)",
            "CLOUD",
            &[
                (
                    "Generative AI tools",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::Lab, Mode::InPerson),
                    ],
                ),
                (
                    "Teaching it back",
                    &[
                        (Kind::Workshop, Mode::InPerson),
                        (Kind::Assessment, Mode::InPerson),
                    ],
                ),
            ],
        )
        .await?;
        let self_paced: &[(Kind, Mode)] = &[
            (Kind::SelfStudy, Mode::Online),
            (Kind::Lecture, Mode::Online),
            (Kind::Lab, Mode::Blended),
            (Kind::Workshop, Mode::InPerson),
        ];
        let closing: &[(Kind, Mode)] = &[
            (Kind::CaseStudy, Mode::Blended),
            (Kind::Workshop, Mode::InPerson),
            (Kind::Survey, Mode::Online),
            (Kind::Assessment, Mode::Online),
        ];
        self.course(
            "AIW-NAT",
            "AI At Work for public officers",
            "CLOUD",
            &[
                ("Generative AI for content", self_paced),
                ("Summaries and meeting notes", self_paced),
                ("Data analysis", self_paced),
                ("Responsible AI in the public sector", self_paced),
                ("Putting it to work", closing),
            ],
        )
        .await?;
        self.programme(
            NATIONAL_TTT_PROGRAMME,
            "AI At Work: change ambassadors",
            "KD",
            &["CLOUD"],
            &[("Train the trainers", &["AIW-NAT-TTT"], "JDN", 5)],
        )
        .await?;
        self.programme(
            NATIONAL_PROGRAMME,
            "AI At Work: every public officer",
            "KD",
            &["CLOUD"],
            &[("Cascade in departments", &["AIW-NAT"], "Departments", 90)],
        )
        .await?;
        Ok(())
    }

    async fn national_people(&mut self) -> anyhow::Result<()> {
        let departments = national_departments();
        let mut records = Vec::with_capacity(self.args.officers + self.args.ambassadors);
        // Ambassadors are spread over the departments, round robin.
        for index in 0..self.args.ambassadors {
            let (_, department) = &departments[index % departments.len()];
            records.push(self.person(&format!("AMB-{index:04}"), department, pb::Sector::Public));
        }
        let mut rng = StdRng::seed_from_u64(stable_u64(self.seed, "officers"));
        let total_weight: u32 = MINISTRIES.iter().map(|(_, _, weight)| weight).sum();
        let mut by_ministry: BTreeMap<String, u64> = BTreeMap::new();
        for index in 0..self.args.officers {
            let mut pick = rng.random_range(0..total_weight);
            let mut ministry = MINISTRIES[0].0;
            for (code, _, weight) in MINISTRIES {
                if pick < weight {
                    ministry = code;
                    break;
                }
                pick -= weight;
            }
            let department = rng.random_range(1..=DEPARTMENTS_PER_MINISTRY);
            let unit = rng.random_range(1..=UNITS_PER_DEPARTMENT);
            let unit_code = format!("{}-U{unit:02}", department_code(ministry, department));
            *by_ministry.entry(ministry.to_owned()).or_default() += 1;
            records.push(self.person(&format!("OFF-{index:06}"), &unit_code, pb::Sector::Public));
        }
        self.officers_by_ministry = by_ministry;
        let total = records.len();
        eprintln!("      importing {total} people");
        self.import(records).await?;
        // Read back who is where, department by department: cohorts are made per department.
        let client = self.clients.people.clone();
        let lookups: Vec<(String, String)> = departments
            .iter()
            .map(|(_, department)| Ok((department.clone(), self.organization_id(department)?)))
            .collect::<anyhow::Result<_>>()?;
        let listed: Vec<(String, Vec<(String, String)>)> = stream::iter(lookups)
            .map(|(code, id)| {
                let client = client.clone();
                async move {
                    let people = Self::people_in(&client, &id, "").await?;
                    anyhow::Ok((code, people))
                }
            })
            .buffer_unordered(self.args.concurrency.max(1))
            .try_collect()
            .await?;
        self.department_people = listed.into_iter().collect();
        let listed_total: usize = self.department_people.values().map(Vec::len).sum();
        if listed_total != total {
            bail!("imported {total} people but {listed_total} are listed in the departments");
        }
        Ok(())
    }

    async fn national_ambassadors(&mut self) -> anyhow::Result<()> {
        let ambassadors: Vec<(String, String)> = self
            .department_people
            .values()
            .flatten()
            .filter(|(external_id, _)| external_id.starts_with("AMB-"))
            .cloned()
            .collect();
        if ambassadors.is_empty() {
            return Ok(());
        }
        let mut sorted = ambassadors;
        sorted.sort();
        let cohort = pb::Cohort {
            name: "Change ambassadors".to_owned(),
            start_date: "2025-08-04".to_owned(),
            end_date: "2025-08-08".to_owned(),
            capacity: i32::try_from(sorted.len()).unwrap_or(i32::MAX).max(1),
            ..Default::default()
        };
        let seeded = self
            .cohort(
                NATIONAL_TTT_PROGRAMME,
                "national/ambassadors",
                cohort,
                &sorted,
            )
            .await?;
        self.spread_progress(&seeded, &["AIW-NAT-TTT"], Spread::Done)
            .await
    }

    /// The national master trainer, certified on a track without requirements (the way the first
    /// master trainers enter); the five-day course they deliver to the ambassadors' cohort as a
    /// session with everyone PRESENT (the cascade's first level: master -> ambassadors); then
    /// every ambassador certified on the ambassador track (trainer course completed, assessed).
    async fn national_certification(&mut self) -> anyhow::Result<()> {
        let ttt = self
            .courses
            .get("AIW-NAT-TTT")
            .cloned()
            .context("ambassadors' course not seeded")?;
        let officer_course = self
            .courses
            .get("AIW-NAT")
            .cloned()
            .context("national course not seeded")?;
        self.import(vec![self.person(
            NATIONAL_MASTER,
            "CLOUD",
            pb::Sector::Private,
        )])
        .await?;
        let master = Self::people_in(
            &self.clients.people,
            &self.organization_id("CLOUD")?,
            NATIONAL_MASTER,
        )
        .await?
        .into_iter()
        .find(|(external_id, _)| external_id == NATIONAL_MASTER)
        .map(|(_, id)| id)
        .context("the master trainer was imported but is not listed")?;
        let issuer = self.organization_id("KD")?;
        let master_track = self
            .track(pb::CertificationTrack {
                code: NATIONAL_MASTER_TRACK.to_owned(),
                title: "AI At Work: master trainer".to_owned(),
                level: pb::TrackLevel::MasterTrainer.into(),
                qualifies_course_ids: vec![ttt.course_id.clone(), officer_course.course_id.clone()],
                requirements: Some(pb::TrackRequirements::default()),
                validity_months: 36,
                scope: pb::TrackScope::Any.into(),
                issuer_organization_id: issuer.clone(),
                ..Default::default()
            })
            .await?;
        let ambassador_track = self
            .track(pb::CertificationTrack {
                code: NATIONAL_AMBASSADOR_TRACK.to_owned(),
                title: "AI At Work: change ambassador".to_owned(),
                level: pb::TrackLevel::Ambassador.into(),
                qualifies_course_ids: vec![officer_course.course_id.clone()],
                requirements: Some(pb::TrackRequirements {
                    trainer_course_version_ids: vec![ttt.version_id.clone()],
                    min_assessment_score: 70,
                    supervised_deliveries_required: 0,
                    assessor_approval_required: true,
                }),
                validity_months: 36,
                scope: pb::TrackScope::OwnOrganization.into(),
                issuer_organization_id: issuer,
                ..Default::default()
            })
            .await?;
        certify(
            &self.clients,
            self.seed,
            &master_track,
            &master,
            NATIONAL_MASTER,
        )
        .await?;
        Counters::add(&self.counters.certificates, 1);
        self.master = Some(master.clone());
        let Some(cohort) = self
            .cohorts
            .iter()
            .find(|cohort| cohort.label == "national/ambassadors")
            .cloned()
        else {
            return Ok(());
        };
        let person_ids = self.national_person_ids();
        let ambassadors: Vec<(String, String)> = cohort
            .enrollments
            .iter()
            .filter_map(|(external_id, _)| {
                person_ids
                    .get(external_id)
                    .map(|id| (external_id.clone(), id.clone()))
            })
            .collect();
        let attendees: Vec<String> = ambassadors.iter().map(|(_, id)| id.clone()).collect();
        let module_id = ttt
            .module_ids
            .first()
            .context("the ambassadors' course has no module")?;
        deliver_session(
            &self.clients,
            &self.counters,
            &PlannedSession {
                request_id: stable_id(self.seed, "session/national/ambassadors"),
                cohort_id: cohort.id.clone(),
                module_id: module_id.clone(),
                lead_trainer_id: master.clone(),
                co_trainer_ids: Vec::new(),
                start: utc(2025, 8, 4, 9),
                end: utc(2025, 8, 8, 17),
                location: "JDN, Cyberjaya".to_owned(),
                present: attendees,
                absent: Vec::new(),
            },
        )
        .await?;
        eprintln!(
            "      master trainer {NATIONAL_MASTER} certified and delivered the course to {} ambassadors",
            ambassadors.len()
        );
        let clients = self.clients.clone();
        let seed = self.seed;
        let certified: Vec<()> = stream::iter(ambassadors)
            .map(|(external_id, person_id)| {
                let clients = clients.clone();
                let track = ambassador_track.clone();
                async move { certify(&clients, seed, &track, &person_id, &external_id).await }
            })
            .buffer_unordered(self.args.concurrency.max(1))
            .try_collect()
            .await?;
        Counters::add(&self.counters.certificates, certified.len());
        eprintln!("      {} ambassadors certified", certified.len());
        Ok(())
    }

    /// Creates (or replays the creation of) a certification track; finds it by code when it was
    /// made under another seed.
    async fn track(&self, track: pb::CertificationTrack) -> anyhow::Result<pb::CertificationTrack> {
        let code = track.code.clone();
        let mut client = self.clients.certification.clone();
        let request = pb::CreateCertificationTrackRequest {
            track: Some(track),
            request_id: stable_id(self.seed, &format!("track/{code}")),
        };
        match retry(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.create_certification_track(request).await }
        })
        .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == Code::AlreadyExists => {
                let mut page_token = String::new();
                loop {
                    let page = client
                        .list_certification_tracks(pb::ListCertificationTracksRequest {
                            page_size: 1000,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    if let Some(found) = page.tracks.into_iter().find(|track| track.code == code) {
                        return Ok(found);
                    }
                    if page.next_page_token.is_empty() {
                        bail!("track {code} exists but cannot be listed");
                    }
                    page_token = page.next_page_token;
                }
            }
            Err(status) => bail!("creating track {code}: {status}"),
        }
    }

    /// Returns external id -> person id of everyone read back by the national people step.
    fn national_person_ids(&self) -> HashMap<String, String> {
        self.department_people
            .values()
            .flatten()
            .map(|(external_id, id)| (external_id.clone(), id.clone()))
            .collect()
    }

    async fn national_cohorts(&mut self) -> anyhow::Result<()> {
        let programme_id = self
            .programmes
            .get(NATIONAL_PROGRAMME)
            .cloned()
            .context("national programme not seeded")?;
        let course = self
            .courses
            .get("AIW-NAT")
            .cloned()
            .context("national course not seeded")?;
        // Plan: per department, officers by external id in cohorts of ~50, led by the department's ambassadors in turn.
        let mut plans = Vec::new();
        for (department, people) in &self.department_people {
            let ambassadors: Vec<&String> = people
                .iter()
                .filter(|(external_id, _)| external_id.starts_with("AMB-"))
                .map(|(external_id, _)| external_id)
                .collect();
            let officers: Vec<(String, String)> = people
                .iter()
                .filter(|(external_id, _)| external_id.starts_with("OFF-"))
                .cloned()
                .collect();
            let department_id = self.organization_id(department)?;
            for (number, members) in officers.chunks(COHORT_SIZE).enumerate() {
                let lead_ambassador = (!ambassadors.is_empty())
                    .then(|| (ambassadors[number % ambassadors.len()].clone(), number));
                let lead = lead_ambassador
                    .as_ref()
                    .map(|(ambassador, _)| format!(", led by {ambassador}"))
                    .unwrap_or_default();
                let settings = pb::Cohort {
                    name: format!("{department} cohort {}{lead}", number + 1),
                    start_date: "2025-09-01".to_owned(),
                    end_date: "2025-12-19".to_owned(),
                    capacity: COHORT_SIZE as i32,
                    eligible_organization_ids: vec![department_id.clone()],
                    ..Default::default()
                };
                plans.push((
                    format!("national/{department}/{number}"),
                    settings,
                    members.to_vec(),
                    lead_ambassador,
                ));
            }
        }
        let total = plans.len();
        eprintln!("      {total} cohorts of up to {COHORT_SIZE}");
        let done = Arc::new(AtomicU64::new(0));
        let mut last_report = Instant::now();
        let clients = self.clients.clone();
        let counters = self.counters.clone();
        let seed = self.seed;
        let mut results = stream::iter(plans)
            .map(|(label, settings, members, lead)| {
                let clients = clients.clone();
                let counters = counters.clone();
                let programme_id = programme_id.clone();
                let course = course.clone();
                let done = done.clone();
                async move {
                    let mut seeded = create_cohort(
                        &clients,
                        seed,
                        &counters,
                        NATIONAL_PROGRAMME,
                        &programme_id,
                        &label,
                        settings,
                        &members,
                    )
                    .await?;
                    seeded.lead = lead;
                    let mut events = Vec::new();
                    for (external_id, enrollment_id) in &seeded.enrollments {
                        events.extend(learner_events(
                            seed,
                            &format!("{label}/AIW-NAT"),
                            external_id,
                            enrollment_id,
                            &course.activities,
                            Spread::National,
                        ));
                    }
                    record_events(&clients, &counters, events).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok(seeded)
                }
            })
            .buffer_unordered(self.args.concurrency.max(1));
        while let Some(result) = results.next().await {
            self.cohorts.push(result?);
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                self.progress_line("cohorts", done.load(Ordering::Relaxed) as usize, total);
            }
        }
        self.progress_line("cohorts", total, total);
        Ok(())
    }
    /// One session of the course's first module per national cohort, led by the cohort's
    /// ambassador: learners who started the course are marked PRESENT (they become the
    /// ambassador's trainees in the cascade), those who did not start ABSENT, and the session is
    /// marked delivered. A cohort without an ambassador in its department has no session.
    async fn national_sessions(&mut self) -> anyhow::Result<()> {
        let course = self
            .courses
            .get("AIW-NAT")
            .cloned()
            .context("national course not seeded")?;
        let module_id = course
            .module_ids
            .first()
            .cloned()
            .context("the national course has no module")?;
        let person_ids = self.national_person_ids();
        let mut plans = Vec::new();
        let mut without_lead = 0;
        for cohort in &self.cohorts {
            if cohort.programme != NATIONAL_PROGRAMME {
                continue;
            }
            let Some((lead, number)) = &cohort.lead else {
                without_lead += 1;
                continue;
            };
            let lead_trainer_id = person_ids
                .get(lead)
                .cloned()
                .with_context(|| format!("ambassador {lead} not read back"))?;
            let label = format!("{}/AIW-NAT", cohort.label);
            let (mut present, mut absent) = (Vec::new(), Vec::new());
            for (external_id, _) in &cohort.enrollments {
                let person_id = person_ids
                    .get(external_id)
                    .cloned()
                    .with_context(|| format!("officer {external_id} not read back"))?;
                let (_, done) = learner_plan(
                    self.seed,
                    &label,
                    external_id,
                    Spread::National,
                    course.activities.len(),
                );
                if done > 0 {
                    present.push(person_id);
                } else {
                    absent.push(person_id);
                }
            }
            let (start, end) = session_window(*number);
            plans.push(PlannedSession {
                request_id: stable_id(self.seed, &format!("session/{}", cohort.label)),
                cohort_id: cohort.id.clone(),
                module_id: module_id.clone(),
                lead_trainer_id,
                co_trainer_ids: Vec::new(),
                start,
                end,
                location: format!("{}, training room", cohort.label),
                present,
                absent,
            });
        }
        let total = plans.len();
        eprintln!(
            "      {total} sessions led by ambassadors ({without_lead} cohorts have no ambassador in their department)"
        );
        let done = Arc::new(AtomicU64::new(0));
        let mut last_report = Instant::now();
        let clients = self.clients.clone();
        let counters = self.counters.clone();
        let mut results = stream::iter(plans)
            .map(|plan| {
                let clients = clients.clone();
                let counters = counters.clone();
                let done = done.clone();
                async move {
                    deliver_session(&clients, &counters, &plan).await?;
                    Counters::add(&counters.trained, plan.present.len());
                    done.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(self.args.concurrency.max(1));
        while let Some(result) = results.next().await {
            result?;
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                self.progress_line("sessions", done.load(Ordering::Relaxed) as usize, total);
            }
        }
        self.progress_line("sessions", total, total);
        Ok(())
    }
}

/// How far learners of a cohort got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spread {
    /// Everyone completed everything.
    Done,
    /// A running cohort: a few done, most part-way, some not started.
    Running,
    /// The national mix: 35% not started, 40% part-way, 25% done.
    National,
}

/// Returns how many activities (in order) a learner has done out of `count`.
fn activities_done(rng: &mut StdRng, spread: Spread, count: usize) -> usize {
    let roll: f64 = rng.random();
    match spread {
        Spread::Done => count,
        Spread::Running | Spread::National => {
            let (not_started, part_way) = if spread == Spread::Running {
                (0.15, 0.75)
            } else {
                (0.35, 0.75)
            };
            if roll < not_started || count == 0 {
                0
            } else if roll < part_way && count > 1 {
                rng.random_range(1..count)
            } else {
                count
            }
        }
    }
}

/// Returns the generator of one learner and how many of `count` activities they did (in order);
/// the national sessions read who started from it, the events are drawn from the generator next.
fn learner_plan(
    seed: u64,
    label: &str,
    external_id: &str,
    spread: Spread,
    count: usize,
) -> (StdRng, usize) {
    let mut rng =
        StdRng::seed_from_u64(stable_u64(seed, &format!("progress/{label}/{external_id}")));
    let done = activities_done(&mut rng, spread, count);
    (rng, done)
}

/// Returns the events of one learner: one per activity done, in course order, at fixed times.
fn learner_events(
    seed: u64,
    label: &str,
    external_id: &str,
    enrollment_id: &str,
    activities: &[ActivityInfo],
    spread: Spread,
) -> Vec<pb::ProgressEvent> {
    let (mut rng, done) = learner_plan(seed, label, external_id, spread, activities.len());
    // Fixed dates: the same seed gives byte-identical events, so a re-run is a replay.
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2025, 9, 1, 8, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::minutes(rng.random_range(0..60 * 24 * 14));
    activities
        .iter()
        .take(done)
        .enumerate()
        .map(|(index, activity)| {
            let occurred = start
                + chrono::Duration::hours(index as i64 * 20)
                + chrono::Duration::minutes(rng.random_range(0..120));
            let (verb, score) = if activity.kind == Kind::Assessment {
                let pass = activity.pass_score.unwrap_or(0).clamp(0, 100);
                (pb::ProgressVerb::Passed, Some(rng.random_range(pass..=100)))
            } else {
                (pb::ProgressVerb::Completed, None)
            };
            pb::ProgressEvent {
                event_id: stable_id(seed, &format!("event/{label}/{external_id}/{index}")),
                enrollment_id: enrollment_id.to_owned(),
                activity_id: activity.id.clone(),
                verb: verb.into(),
                score,
                duration_seconds: rng.random_range(600..5400),
                occurred_time: Some(prost_types::Timestamp {
                    seconds: occurred.timestamp(),
                    nanos: 0,
                }),
                source: pb::ProgressSource::App.into(),
                ..Default::default()
            }
        })
        .collect()
}

/// Retries `call` on UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED (a busy SQLite, a
/// shed call, a call that waited past the server's deadline behind other writers) with backoff;
/// safe because every seeder request carries a request id or event ids, so a call that did
/// commit before its deadline is answered again, not applied twice.
async fn retry<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut delay = Duration::from_millis(100);
    for _ in 0..10 {
        match call().await {
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
                ) =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
    call().await
}

/// Records `events` in batches; counts accepted ones and refused ones (printing the first few).
async fn record_events(
    clients: &Clients,
    counters: &Counters,
    events: Vec<pb::ProgressEvent>,
) -> anyhow::Result<()> {
    for chunk in events.chunks(PROGRESS_BATCH) {
        let request = pb::BatchRecordProgressRequest {
            events: chunk.to_vec(),
        };
        let response = retry(|| {
            let mut client = clients.progress.clone();
            let request = request.clone();
            async move { client.batch_record_progress(request).await }
        })
        .await
        .context("recording progress")?
        .into_inner();
        let mut refused = 0;
        for ack in &response.acks {
            if let Some(error) = &ack.error {
                if refused < 3 {
                    eprintln!(
                        "      event {} refused: {} {}",
                        error.key, error.reason, error.message
                    );
                }
                refused += 1;
            }
        }
        Counters::add(&counters.events, response.acks.len() - refused);
        Counters::add(&counters.refused, refused);
    }
    Ok(())
}

/// Creates and opens a cohort and enrols `members` (external id, person id); returns it with its enrolments.
#[allow(clippy::too_many_arguments)]
async fn create_cohort(
    clients: &Clients,
    seed: u64,
    counters: &Counters,
    programme: &str,
    programme_id: &str,
    label: &str,
    settings: pb::Cohort,
    members: &[(String, String)],
) -> anyhow::Result<SeededCohort> {
    let client = clients.programmes.clone();
    let request = pb::CreateCohortRequest {
        cohort: Some(pb::Cohort {
            programme_id: programme_id.to_owned(),
            ..settings
        }),
        request_id: stable_id(seed, &format!("cohort/{label}")),
    };
    let cohort = retry(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.create_cohort(request).await }
    })
    .await
    .with_context(|| format!("creating cohort {label}"))?
    .into_inner();
    if cohort.state() == pb::CohortState::Planned {
        let request = pb::ChangeCohortStateRequest {
            id: cohort.id.clone(),
            state: pb::CohortState::Open.into(),
            etag: String::new(),
        };
        match retry(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.change_cohort_state(request).await }
        })
        .await
        {
            Ok(_) => {}
            // A replayed create answers with the first (planned) cohort, which is open by now.
            Err(status) if status.code() == Code::FailedPrecondition => {}
            Err(status) => bail!("opening cohort {label}: {status}"),
        }
    }
    Counters::add(&counters.cohorts, 1);
    let mut enrollments = Vec::with_capacity(members.len());
    let by_person: HashMap<&str, &str> = members
        .iter()
        .map(|(external_id, id)| (id.as_str(), external_id.as_str()))
        .collect();
    for (part, chunk) in members.chunks(1000).enumerate() {
        let request = pb::BatchEnrollRequest {
            cohort_id: cohort.id.clone(),
            person_ids: chunk.iter().map(|(_, id)| id.clone()).collect(),
            request_id: stable_id(seed, &format!("enroll/{label}/{part}")),
        };
        let response = retry(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.batch_enroll(request).await }
        })
        .await
        .with_context(|| format!("enrolling in cohort {label}"))?
        .into_inner();
        for result in response.results {
            match (result.enrollment, result.error) {
                (Some(enrollment), _) => {
                    let external_id = by_person
                        .get(result.person_id.as_str())
                        .map(|id| (*id).to_owned())
                        .unwrap_or_default();
                    enrollments.push((external_id, enrollment.id));
                }
                (None, Some(error)) => {
                    eprintln!(
                        "      enrolment in {label} refused: {} {}",
                        error.reason, error.message
                    );
                    Counters::add(&counters.refused, 1);
                }
                (None, None) => {}
            }
        }
    }
    Counters::add(&counters.enrollments, enrollments.len());
    enrollments.sort();
    Ok(SeededCohort {
        label: label.to_owned(),
        id: cohort.id,
        programme: programme.to_owned(),
        enrollments,
        lead: None,
    })
}

/// A session the seeder schedules, takes attendance of and marks delivered.
#[derive(Debug, Clone)]
struct PlannedSession {
    request_id: String,
    cohort_id: String,
    module_id: String,
    lead_trainer_id: String,
    /// Candidates co-delivering under the lead.
    co_trainer_ids: Vec<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    location: String,
    /// Person ids marked PRESENT.
    present: Vec<String>,
    /// Person ids marked ABSENT.
    absent: Vec<String>,
}

fn utc(year: i32, month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, 0, 0)
        .single()
        .unwrap_or_default()
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    }
}

/// Returns the window of the session of a department's cohort `number`: three sessions of two
/// and a half hours a day from 1 September 2025, so an ambassador's sessions never overlap.
fn session_window(number: usize) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = utc(2025, 9, 1, 9)
        + chrono::Duration::days((number / 3) as i64)
        + chrono::Duration::hours(3 * (number % 3) as i64);
    (start, start + chrono::Duration::minutes(150))
}

/// Schedules `plan` (a replay returns the first session), records its attendance and marks it
/// delivered; a session already delivered is left as it is, so a re-run changes nothing.
/// Returns the session's id.
async fn deliver_session(
    clients: &Clients,
    counters: &Counters,
    plan: &PlannedSession,
) -> anyhow::Result<String> {
    let request = pb::CreateSessionRequest {
        session: Some(pb::Session {
            cohort_id: plan.cohort_id.clone(),
            module_id: plan.module_id.clone(),
            start_time: Some(timestamp(plan.start)),
            end_time: Some(timestamp(plan.end)),
            location: plan.location.clone(),
            lead_trainer_id: plan.lead_trainer_id.clone(),
            co_trainer_ids: plan.co_trainer_ids.clone(),
            ..Default::default()
        }),
        request_id: plan.request_id.clone(),
    };
    let session = retry(|| {
        let mut client = clients.delivery.clone();
        let request = request.clone();
        async move { client.create_session(request).await }
    })
    .await
    .with_context(|| format!("scheduling the session of cohort {}", plan.cohort_id))?
    .into_inner();
    Counters::add(&counters.sessions, 1);
    Counters::add(&counters.attendance, plan.present.len() + plan.absent.len());
    if session.state() == pb::SessionState::Delivered {
        return Ok(session.id);
    }
    for (status, people) in [
        (pb::AttendanceStatus::Present, &plan.present),
        (pb::AttendanceStatus::Absent, &plan.absent),
    ] {
        for chunk in people.chunks(1000) {
            let request = pb::RecordAttendanceRequest {
                session_id: session.id.clone(),
                person_ids: chunk.to_vec(),
                status: status.into(),
            };
            let response = retry(|| {
                let mut client = clients.delivery.clone();
                let request = request.clone();
                async move { client.record_attendance(request).await }
            })
            .await
            .with_context(|| format!("recording attendance of session {}", session.id))?
            .into_inner();
            Counters::add(
                &counters.attendance_events,
                usize::try_from(response.events_recorded).unwrap_or(0),
            );
        }
    }
    let request = pb::MarkDeliveredRequest {
        id: session.id.clone(),
        etag: String::new(),
    };
    retry(|| {
        let mut client = clients.delivery.clone();
        let request = request.clone();
        async move { client.mark_delivered(request).await }
    })
    .await
    .with_context(|| format!("marking session {} delivered", session.id))?;
    Ok(session.id)
}

/// Takes `person_id` through `track` to a certificate: opens the candidacy (a replay returns
/// it), then makes each transition its state still needs, so a re-run of a certified candidacy
/// changes nothing. The assessment score is drawn from the seed and passes.
async fn certify(
    clients: &Clients,
    seed: u64,
    track: &pb::CertificationTrack,
    person_id: &str,
    external_id: &str,
) -> anyhow::Result<()> {
    use pb::CandidacyState as State;
    let label = format!("candidacy/{}/{external_id}", track.code);
    let request = pb::CreateCandidacyRequest {
        track_id: track.id.clone(),
        person_id: person_id.to_owned(),
        request_id: stable_id(seed, &label),
    };
    let mut candidacy = retry(|| {
        let mut client = clients.certification.clone();
        let request = request.clone();
        async move { client.create_candidacy(request).await }
    })
    .await
    .with_context(|| format!("opening the candidacy of {external_id} on {}", track.code))?
    .into_inner();
    let requirements = track.requirements.clone().unwrap_or_default();
    let needs_assessment =
        requirements.min_assessment_score > 0 || requirements.assessor_approval_required;
    let candidacy_id = candidacy.id.clone();
    // At most one call per state, in order; the loop ends at CERTIFIED.
    for _ in 0..8 {
        let mut client = clients.certification.clone();
        let state = candidacy.state();
        let moved = match state {
            State::Certified => return Ok(()),
            State::Candidate => {
                client
                    .start_training(pb::StartTrainingRequest {
                        id: candidacy_id.clone(),
                        reason: "enrolled in the ambassadors' course".to_owned(),
                        etag: String::new(),
                    })
                    .await
            }
            State::Training => {
                client
                    .begin_supervised_practice(pb::BeginSupervisedPracticeRequest {
                        id: candidacy_id.clone(),
                        reason: "trainer course completed".to_owned(),
                        etag: String::new(),
                    })
                    .await
            }
            State::SupervisedPractice => {
                client
                    .submit_for_assessment(pb::SubmitForAssessmentRequest {
                        id: candidacy_id.clone(),
                        reason: "ready for assessment".to_owned(),
                        etag: String::new(),
                    })
                    .await
            }
            State::AwaitingAssessment
                if needs_assessment && candidacy.assessment_score.is_none() =>
            {
                let score = 70 + (stable_u64(seed, &format!("{label}/score")) % 31) as i32;
                client
                    .record_assessment(pb::RecordAssessmentRequest {
                        id: candidacy.id.clone(),
                        score,
                        approved: true,
                        reason: "teach-back assessed by the master trainer".to_owned(),
                        etag: String::new(),
                        issue_certificate: false,
                    })
                    .await
            }
            State::AwaitingAssessment => {
                client
                    .issue_certificate(pb::IssueCertificateRequest {
                        candidacy_id: candidacy.id.clone(),
                        reason: "every requirement met".to_owned(),
                    })
                    .await
                    .with_context(|| format!("certifying {external_id} on {}", track.code))?;
                return Ok(());
            }
            other => bail!(
                "candidacy of {external_id} on {} is {other:?}: cannot certify",
                track.code
            ),
        };
        candidacy = moved
            .with_context(|| {
                format!(
                    "moving the candidacy of {external_id} on {} from {state:?}",
                    track.code
                )
            })?
            .into_inner();
    }
    bail!(
        "candidacy of {external_id} on {} did not reach CERTIFIED",
        track.code
    )
}

/// Returns (ministry code, department code) of every national department, in order.
pub fn national_departments() -> Vec<(String, String)> {
    MINISTRIES
        .iter()
        .flat_map(|(ministry, _, _)| {
            (1..=DEPARTMENTS_PER_MINISTRY).map(move |department| {
                (
                    (*ministry).to_owned(),
                    department_code(ministry, department),
                )
            })
        })
        .collect()
}

fn department_code(ministry: &str, department: usize) -> String {
    format!("{ministry}-D{department:02}")
}

/// Returns the person record the seeder imports for `external_id`: a name and email derived from the seed.
pub fn person_record(
    seed: u64,
    external_id: &str,
    organization_code: &str,
    sector: pb::Sector,
) -> pb::PersonRecord {
    let pick = stable_u64(seed, external_id);
    let given = GIVEN_NAMES[(pick % GIVEN_NAMES.len() as u64) as usize];
    let family = FAMILY_NAMES[((pick >> 8) % FAMILY_NAMES.len() as u64) as usize];
    let domain = if sector == pb::Sector::Private {
        "example.com"
    } else {
        "gov.example.my"
    };
    pb::PersonRecord {
        external_id: external_id.to_owned(),
        full_name: format!("{given} {family}"),
        email: format!("{}@{domain}", external_id.to_lowercase()),
        organization_external_code: organization_code.to_owned(),
        sector: sector.into(),
        status: pb::PersonStatus::Active.into(),
        ..Default::default()
    }
}

/// The AI At Work pilot questionnaire.
fn pilot_questions() -> Vec<pb::SurveyQuestion> {
    let question =
        |id: &str, text: &str, kind: pb::SurveyQuestionKind, required: bool| pb::SurveyQuestion {
            id: id.to_owned(),
            text: text.to_owned(),
            kind: kind.into(),
            required,
            ..Default::default()
        };
    vec![
        pb::SurveyQuestion {
            options: vec!["Yes".to_owned(), "No".to_owned()],
            ..question(
                "saved_time",
                "Did the AI tools save you time?",
                pb::SurveyQuestionKind::SingleChoice,
                true,
            )
        },
        pb::SurveyQuestion {
            unit: "hours saved per week".to_owned(),
            min: Some(0.0),
            max: Some(40.0),
            ..question(
                "hours_saved",
                "How many hours a week did they save you?",
                pb::SurveyQuestionKind::Number,
                true,
            )
        },
        question(
            "usefulness",
            "How useful was the training? (1-5)",
            pb::SurveyQuestionKind::Scale,
            false,
        ),
        question(
            "comments",
            "Anything else?",
            pb::SurveyQuestionKind::FreeText,
            false,
        ),
    ]
}

/// Answers of pilot officer `index` (of 270): the first 33 saved four hours a week, the next
/// 213 three and a half, the last 24 none; mean 3.25, 91% saved time.
fn pilot_answers(index: usize) -> Vec<pb::SurveyAnswer> {
    use pb::survey_answer::Value;
    let hours = match index {
        0..33 => 4.0,
        33..246 => 3.5,
        _ => 0.0,
    };
    let answer = |id: &str, value: Value| pb::SurveyAnswer {
        question_id: id.to_owned(),
        value: Some(value),
    };
    let mut answers = vec![
        answer(
            "saved_time",
            Value::Choice(if hours > 0.0 { "Yes" } else { "No" }.to_owned()),
        ),
        answer("hours_saved", Value::Number(hours)),
        answer(
            "usefulness",
            Value::Scale(if hours > 0.0 {
                3 + (index % 3) as i32
            } else {
                2
            }),
        ),
    ];
    if index.is_multiple_of(45) {
        answer_comment(&mut answers, index);
    }
    answers
}

fn answer_comment(answers: &mut Vec<pb::SurveyAnswer>, index: usize) {
    const COMMENTS: [&str; 6] = [
        "Meeting notes now take minutes instead of an hour.",
        "Drafting replies to the public is much faster.",
        "Useful, but our laptops need more memory.",
        "The data analysis session was the best part.",
        "I would like a follow-up on spreadsheets.",
        "Colleagues in my unit asked me to show them.",
    ];
    answers.push(pb::SurveyAnswer {
        question_id: "comments".to_owned(),
        value: Some(pb::survey_answer::Value::Text(
            COMMENTS[(index / 45) % COMMENTS.len()].to_owned(),
        )),
    });
}

fn activity_title(kind: Kind, index: usize) -> String {
    let name = match kind {
        Kind::Lecture => "lecture",
        Kind::Lab => "hands-on lab",
        Kind::Simulation => "simulation",
        Kind::FieldVisit => "field visit",
        Kind::CaseStudy => "case study",
        Kind::Workshop => "workshop",
        Kind::IndustryAttachment => "industry attachment",
        Kind::Assessment => "assessment",
        Kind::Survey => "survey",
        Kind::SelfStudy => "self-study",
        Kind::Unspecified => "activity",
    };
    format!("{name} {}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activities(count: usize) -> Vec<ActivityInfo> {
        (0..count)
            .map(|index| ActivityInfo {
                id: format!("activity-{index}"),
                kind: if index + 1 == count {
                    Kind::Assessment
                } else {
                    Kind::Lecture
                },
                pass_score: (index + 1 == count).then_some(70),
            })
            .collect()
    }

    #[test]
    fn learner_events_are_deterministic_and_valid() {
        let activities = activities(20);
        for learner in 0..200 {
            let external_id = format!("OFF-{learner:06}");
            let first = learner_events(
                7,
                "cohort",
                &external_id,
                "e",
                &activities,
                Spread::National,
            );
            let again = learner_events(
                7,
                "cohort",
                &external_id,
                "e",
                &activities,
                Spread::National,
            );
            assert_eq!(first, again);
            assert!(first.len() <= activities.len());
            for (index, event) in first.iter().enumerate() {
                assert_eq!(event.activity_id, activities[index].id);
                let is_assessment = activities[index].kind == Kind::Assessment;
                assert_eq!(event.score.is_some(), is_assessment);
                if let Some(score) = event.score {
                    assert!((70..=100).contains(&score));
                }
            }
        }
    }

    #[test]
    fn national_spread_has_learners_at_every_stage() {
        let mut rng = StdRng::seed_from_u64(1);
        let outcomes: Vec<usize> = (0..10_000)
            .map(|_| activities_done(&mut rng, Spread::National, 20))
            .collect();
        let not_started = outcomes.iter().filter(|done| **done == 0).count();
        let done = outcomes.iter().filter(|done| **done == 20).count();
        let part_way = outcomes.len() - not_started - done;
        assert!((3000..4000).contains(&not_started), "{not_started}");
        assert!((2000..3000).contains(&done), "{done}");
        assert!((3500..4500).contains(&part_way), "{part_way}");
    }

    #[test]
    fn sessions_of_one_department_never_overlap() {
        // Cohort numbers of a department are the slots of its ambassadors' calendars.
        let windows: Vec<_> = (0..300).map(session_window).collect();
        for (index, (start, end)) in windows.iter().enumerate() {
            assert!(end > start);
            assert!(*end - *start <= chrono::Duration::days(14));
            for (other_start, other_end) in &windows[index + 1..] {
                assert!(end <= other_start || other_end <= start, "{index}");
            }
        }
        assert!(windows.iter().all(|(_, end)| *end < utc(2026, 1, 1, 0)));
    }

    #[test]
    fn who_attends_is_who_started() {
        // The sessions mark PRESENT exactly the learners whose events are not empty.
        let activities = activities(20);
        for learner in 0..500 {
            let external_id = format!("OFF-{learner:06}");
            let (_, done) = learner_plan(
                42,
                "national/MOE-D01/0/AIW-NAT",
                &external_id,
                Spread::National,
                20,
            );
            let events = learner_events(
                42,
                "national/MOE-D01/0/AIW-NAT",
                &external_id,
                "e",
                &activities,
                Spread::National,
            );
            assert_eq!(done, events.len());
        }
    }

    #[test]
    fn the_national_profile_certifies_before_cohorts_and_delivers_after() {
        let steps = steps(Profile::National);
        let position = |step: Step| steps.iter().position(|s| *s == step).unwrap();
        assert!(position(Step::NationalAmbassadors) < position(Step::NationalCertification));
        assert!(position(Step::NationalCertification) < position(Step::NationalSessions));
        assert!(position(Step::NationalCohorts) < position(Step::NationalSessions));
    }

    #[test]
    fn person_records_depend_on_seed_only() {
        let first = person_record(1, "OFF-000001", "MOE-D01-U01", pb::Sector::Public);
        assert_eq!(
            first,
            person_record(1, "OFF-000001", "MOE-D01-U01", pb::Sector::Public)
        );
        assert_eq!(first.email, "off-000001@gov.example.my");
    }
}
