//! The real `lms` binary as a child process: started on a fixed port over the test's data dir and
//! database, waited for until its health service answers SERVING, killed with SIGKILL.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The server binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_lms");
/// Longest wait for a started server to answer SERVING (the first start migrates an empty database).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between two health polls while a server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Starts tried on fresh ports when the chosen one turns out to be taken.
const PORT_ATTEMPTS: usize = 5;

/// Starts servers over one data dir and database, one after the other, on the same port.
pub(crate) struct Launcher {
    data_dir: PathBuf,
    database_url: String,
    port: u16,
    starts: usize,
}

/// A running server process.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its stdout and stderr.
    pub(crate) log: PathBuf,
}

impl Launcher {
    /// Returns a launcher for `data_dir` and `database_url` on a free port.
    pub(crate) fn new(data_dir: &Path, database_url: &str) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            database_url: database_url.to_owned(),
            port: free_port(),
            starts: 0,
        }
    }

    /// Prints an admin token with `lms token`, signed with the data dir's development key.
    pub(crate) async fn admin_token(&self) -> String {
        let output = self
            .command()
            .args(["token", "--role", "admin", "--subject", "crash-admin"])
            .args(["--ttl", "2h"])
            .stderr(Stdio::inherit())
            .output()
            .await
            .expect("run lms token");
        assert!(output.status.success(), "lms token: {}", output.status);
        String::from_utf8(output.stdout)
            .expect("token is UTF-8")
            .trim()
            .to_owned()
    }

    /// Starts `lms serve` with SQLite `synchronous` set to `synchronous` and waits until it
    /// answers SERVING. A port taken meanwhile by another process moves the server to a new one.
    pub(crate) async fn start(&mut self, synchronous: &str) -> Server {
        for _ in 0..PORT_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            self.starts += 1;
            let log = self.data_dir.join(format!("server-{}.log", self.starts));
            let file = std::fs::File::create(&log).expect("server log file");
            let mut child = self
                .command()
                .arg("serve")
                .env("LMS_LISTEN", addr.to_string())
                .env("LMS_SQLITE_SYNCHRONOUS", synchronous)
                .env("LMS_EXPIRY_SWEEP_INTERVAL", "0s")
                .stdout(file.try_clone().expect("log file handle"))
                .stderr(file)
                .kill_on_drop(true)
                .spawn()
                .expect("spawn lms serve");
            match wait_serving(&mut child, addr).await {
                Ok(()) => return Server { child, addr, log },
                Err(why) => {
                    let _ = child.kill().await;
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("Address already in use") {
                        eprintln!("crash: port {} is taken; moving to another", self.port);
                        self.port = free_port();
                        continue;
                    }
                    panic!("the server did not start ({why}); its log:\n{}", tail(&log));
                }
            }
        }
        panic!("no free port after {PORT_ATTEMPTS} attempts");
    }

    /// `lms` with the test's data dir and database and nothing inherited that could change them.
    fn command(&self) -> Command {
        let mut command = Command::new(BINARY);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LMS_") {
                command.env_remove(name);
            }
        }
        command
            .env("LMS_DATA_DIR", &self.data_dir)
            .env("DATABASE_URL", &self.database_url)
            .env("LMS_LOG_FORMAT", "pretty")
            .stdin(Stdio::null());
        command
    }
}

impl Server {
    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the server");
    }
}

/// Polls the health service (bounded by [`START_DEADLINE`]) until it answers SERVING.
async fn wait_serving(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let started = Instant::now();
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2));
    loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            // The log says why (the caller reads it: a port taken meanwhile is retried).
            return Err(format!("exited with {status}"));
        }
        if let Ok(channel) = endpoint.connect().await
            && serving(channel).await
        {
            return Ok(());
        }
        if started.elapsed() > START_DEADLINE {
            return Err(format!("not SERVING after {START_DEADLINE:?}"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn serving(channel: Channel) -> bool {
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    matches!(answer, Ok(response) if response.get_ref().status() == ServingStatus::Serving)
}

/// Returns a port that was free a moment ago (the listener is dropped at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Returns the last lines of a log file.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
