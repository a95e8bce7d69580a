//! `lms`: serve the API, apply migrations, mint a development token, seed a data set or load-test a server.

use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use lms::auth::{Role, token};
use lms::config::Config;

// Many short-lived allocations per call (rows, protobuf messages, futures): mimalloc spends less
// time in them than the system allocator (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux). Where the kernel backs every
/// anonymous mapping with 2 MiB pages (`/sys/kernel/mm/transparent_hugepage/enabled` = always),
/// a few live bytes hold a whole huge page resident, and memory mimalloc frees after a burst of
/// calls is never returned: with 1,000 open streams on SQLite after the read scenarios, peak RSS
/// was 161 MB with huge pages and 116 MB without (docs/capacity.md). The flag covers the pages
/// the process faults in from here on.
fn keep_pages_small() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Learning-management backend for national upskilling programmes, served over gRPC.
#[derive(Debug, Parser)]
#[command(name = "lms", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,

    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up: the size of the seed and bench options costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC, gRPC-Web, reflection and health (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print a bearer token signed with the development key of the data dir.
    Token(TokenArgs),
    /// Delete feed events older than a retention period (cursors are never reused).
    PruneEvents(PruneEventsArgs),
    /// Copy the SQLite database to a file while servers serve, and check the copy.
    Backup(lms::tools::backup::BackupArgs),
    /// Replace the stopped SQLite database with a backup; the feed gets a new history.
    Restore(lms::tools::backup::RestoreArgs),
    /// Give the feed a new history (after a PostgreSQL restore): earlier resume tokens are refused.
    RotateFeedHistory,
    /// Fill the database through the API with a deterministic data set (demo or national).
    Seed(lms::tools::seed::SeedArgs),
    /// Load-test a running server (or, `bench report`, write BENCHMARKS.md from results).
    Bench(lms::tools::bench::BenchArgs),
    /// Probe a running server's health (exit 0 when SERVING, 1 otherwise), for container and
    /// orchestrator health checks.
    Health(lms::tools::health::HealthArgs),
    /// Print a generated reference page of docs/reference/ (kept in step by tests/docs.rs).
    #[command(hide = true)]
    Reference(ReferenceArgs),
}

#[derive(Debug, clap::Args)]
struct ReferenceArgs {
    /// The page: `config` (docs/reference/configuration.md), `api` or `security`.
    #[arg(value_enum)]
    page: ReferencePage,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReferencePage {
    Config,
    Api,
    Security,
}

#[derive(Debug, clap::Args)]
struct PruneEventsArgs {
    /// Retention period, e.g. `90d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Duration,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// Subject: a person id or a service name.
    #[arg(long)]
    subject: String,
    /// Role to grant (repeat for several): admin, org_admin, programme_manager, trainer, assessor, learner, hr_service.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    roles: Vec<Role>,
    /// Organisation whose subtree an org_admin manages.
    #[arg(long)]
    org: Option<String>,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        format!("unknown role {name}; one of {}", names.join(", "))
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keep_pages_small();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let _telemetry = lms::telemetry::init_with(
                config.log_format,
                config.telemetry.otlp_endpoint.as_deref(),
            )?;
            let app = lms::App::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::PruneEvents(args) => {
            lms::telemetry::init(config.log_format);
            let store = lms::store::Store::connect(&config).await?;
            let retention =
                chrono::Duration::from_std(args.older_than).context("--older-than is too long")?;
            let deleted = store.prune_events(chrono::Utc::now() - retention).await?;
            println!("deleted {deleted} events");
            Ok(())
        }
        Command::Migrate => {
            lms::telemetry::init(config.log_format);
            let store = lms::store::Store::connect(&config).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token(args) => {
            let auth = &config.auth;
            if auth.jwt_public_key.is_some()
                || auth.jwks_file.is_some()
                || auth.jwks_url.is_some()
                || auth.oidc_issuer_url.is_some()
            {
                anyhow::bail!(
                    "a production key is configured; tokens come from its issuer, not from lms token"
                );
            }
            if args.roles.contains(&Role::OrgAdmin) && args.org.is_none() {
                anyhow::bail!(
                    "--role org_admin needs --org <organization id>: the subtree the token may manage"
                );
            }
            let request = token::TokenRequest {
                subject: args.subject,
                roles: args.roles,
                organization_id: args.org,
                ttl: args.ttl,
            };
            let jwt = token::sign_dev_token(&config.auth, &config.data_dir, &request)
                .context("signing the token")?;
            println!("{jwt}");
            Ok(())
        }
        Command::Backup(args) => lms::tools::backup::backup(config, args).await,
        Command::Restore(args) => lms::tools::backup::restore(config, args).await,
        Command::RotateFeedHistory => lms::tools::backup::rotate_feed_history(config).await,
        Command::Seed(args) => lms::tools::seed::run(config, args).await,
        Command::Bench(args) => lms::tools::bench::run(config, args).await,
        Command::Health(args) => std::process::exit(lms::tools::health::run(&config, args).await),
        Command::Reference(args) => {
            let page = match args.page {
                ReferencePage::Config => {
                    lms::tools::reference::configuration_markdown(&Cli::command())
                }
                ReferencePage::Api => lms::tools::reference::api_markdown()?,
                ReferencePage::Security => lms::tools::reference::security_markdown(),
            };
            print!("{page}");
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
