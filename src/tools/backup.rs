//! Backups and restores (`lms backup`, `lms restore`, `lms rotate-feed-history`).
//!
//! SQLite: `lms backup --to FILE` copies the database while servers keep serving (`VACUUM INTO`,
//! one read transaction), then checks the copy (`PRAGMA integrity_check`) before it takes its
//! final name. `lms restore --from FILE`, with every server stopped, checks the backup, gives the
//! copy a new feed history, keeps the replaced database beside it and puts the copy in its place.
//! PostgreSQL is backed up with `pg_dump -Fc` and restored with `pg_restore`, followed by
//! `lms rotate-feed-history` (docs/backups.md). Either way, resume tokens issued before the
//! restore are refused with FEED_HISTORY_CHANGED, so an HR system resynchronises instead of
//! silently skipping events.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use anyhow::{Context as _, bail};
use sea_orm::sqlx::{
    ConnectOptions as _, Connection as _, Row as _, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode},
};

use crate::config::Config;
use crate::store::Store;

/// Arguments of `lms backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// File to write the backup to (must not exist yet).
    #[arg(long)]
    pub to: PathBuf,
}

/// Arguments of `lms restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Backup file written by `lms backup`.
    #[arg(long)]
    pub from: PathBuf,
}

/// What a checked SQLite file holds.
#[derive(Debug)]
struct FileSummary {
    history: String,
    head: i64,
    bytes: u64,
}

/// `lms backup --to FILE`: a consistent, checked copy of the SQLite database, taken while
/// servers keep serving.
pub async fn backup(config: Config, args: BackupArgs) -> anyhow::Result<()> {
    let url = config.database_url();
    if !url.starts_with("sqlite:") {
        bail!(
            "lms backup copies SQLite databases; back PostgreSQL up with pg_dump -Fc (docs/backups.md)"
        );
    }
    if args.to.exists() {
        bail!("{} exists already; choose a new file", args.to.display());
    }
    let partial = with_suffix(&args.to, ".partial");
    // Left over from an interrupted backup: never a valid one.
    let _ = std::fs::remove_file(&partial);
    let store = Store::connect(&config).await?;
    store
        .vacuum_into(&partial)
        .await
        .with_context(|| format!("copying the database to {}", partial.display()))?;
    store.close().await;
    let summary = match check_file(&partial).await {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error.context("the copy failed its check and was deleted"));
        }
    };
    sync_file(&partial)?;
    std::fs::rename(&partial, &args.to)
        .with_context(|| format!("renaming the copy to {}", args.to.display()))?;
    sync_parent(&args.to)?;
    println!(
        "backup written to {} ({} bytes, integrity ok, feed history {} head {})",
        args.to.display(),
        summary.bytes,
        summary.history,
        summary.head
    );
    Ok(())
}

/// `lms restore --from FILE`: replaces the (stopped) SQLite database with a checked backup that
/// gets a new feed history. The replaced database is kept beside it.
pub async fn restore(config: Config, args: RestoreArgs) -> anyhow::Result<()> {
    let url = config.database_url();
    if !url.starts_with("sqlite:") {
        bail!(
            "lms restore restores SQLite databases; restore PostgreSQL with pg_restore, then run \
             lms rotate-feed-history (docs/backups.md)"
        );
    }
    let database = SqliteConnectOptions::from_str(&url)
        .context("reading the SQLite database URL")?
        .get_filename()
        .to_path_buf();
    let backup = check_file(&args.from)
        .await
        .with_context(|| format!("checking the backup {}", args.from.display()))?;

    // The copy is prepared beside the database (same file system, so the final rename is atomic).
    let incoming = with_suffix(&database, ".restoring");
    let _ = std::fs::remove_file(&incoming);
    if let Some(folder) = database.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    std::fs::copy(&args.from, &incoming)
        .with_context(|| format!("copying the backup to {}", incoming.display()))?;
    let new_history = crate::domain::feed::new_history();
    {
        let mut connection = open(&incoming, false).await?;
        sea_orm::sqlx::query("UPDATE outbox_head SET history = ?1 WHERE id = 1")
            .bind(&new_history)
            .execute(&mut connection)
            .await
            .context("giving the restored feed a new history")?;
        connection.close().await.ok();
    }
    sync_file(&incoming)?;

    let replaced = if database.exists() {
        // Exclusive locking fails while any other connection (a running server) has the database
        // open; switching out of WAL folds the WAL into the file, so the kept copy is complete.
        let connection = match open(&database, true).await {
            Ok(connection) => connection,
            Err(error) => {
                let _ = std::fs::remove_file(&incoming);
                return Err(error.context(format!(
                    "{} is in use: stop every server using it before restoring",
                    database.display()
                )));
            }
        };
        connection.close().await.ok();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let replaced = with_suffix(&database, &format!(".replaced-{stamp}"));
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(with_suffix(&database, suffix));
        }
        std::fs::rename(&database, &replaced)
            .with_context(|| format!("moving the current database to {}", replaced.display()))?;
        Some(replaced)
    } else {
        None
    };
    std::fs::rename(&incoming, &database)
        .with_context(|| format!("moving the restored copy to {}", database.display()))?;
    sync_parent(&database)?;
    println!(
        "restored {} into {} (feed head {}; feed history {} replaced by {}: resume tokens from \
         before the restore are refused with FEED_HISTORY_CHANGED)",
        args.from.display(),
        database.display(),
        backup.head,
        backup.history,
        new_history
    );
    if let Some(replaced) = replaced {
        println!("the replaced database was kept as {}", replaced.display());
    }
    Ok(())
}

/// `lms rotate-feed-history`: gives the feed a new history (after a PostgreSQL restore, or any
/// time the feed must not be resumed from earlier tokens).
pub async fn rotate_feed_history(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config).await?;
    let (old, new) = store.rotate_feed_history().await?;
    store.close().await;
    println!(
        "feed history {old} replaced by {new}: resume tokens of {old} are refused with \
         FEED_HISTORY_CHANGED"
    );
    Ok(())
}

/// Opens `path` as the only connection: `exclusive` takes SQLite's exclusive lock (failing at
/// once if anyone else has the file open) and leaves WAL mode.
async fn open(path: &Path, exclusive: bool) -> anyhow::Result<SqliteConnection> {
    let mut options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::ZERO);
    if exclusive {
        options = options
            .locking_mode(SqliteLockingMode::Exclusive)
            .journal_mode(SqliteJournalMode::Delete);
    }
    options
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))
}

/// Checks a SQLite file: `PRAGMA integrity_check` answers `ok` and it holds an LMS feed.
async fn check_file(path: &Path) -> anyhow::Result<FileSummary> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let problems: Vec<String> = sea_orm::sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut connection)
        .await
        .context("running PRAGMA integrity_check")?;
    if problems != ["ok"] {
        bail!(
            "PRAGMA integrity_check found problems: {}",
            problems.join("; ")
        );
    }
    let row = sea_orm::sqlx::query("SELECT history, sequence FROM outbox_head WHERE id = 1")
        .fetch_one(&mut connection)
        .await
        .context("reading the feed head: not an LMS database of this version")?;
    let summary = FileSummary {
        history: row.try_get("history")?,
        head: row.try_get("sequence")?,
        bytes,
    };
    connection.close().await.ok();
    Ok(summary)
}

/// Returns `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Flushes a file's contents to disk.
fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Flushes the directory entry of `path` (a rename) to disk.
fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    std::fs::File::open(folder)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", folder.display()))
}
