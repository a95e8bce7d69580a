//! Keeps `deploy/` honest: every setting its files (and docs/deployment.md) name is one the server
//! reads, the image probes with `lms health` as a non-root user on the port it exposes, and the
//! systemd unit waits longer than the shutdown grace before it kills.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use clap::Args as _;

/// Files that name settings.
const FILES: &[&str] = &[
    "deploy/Dockerfile",
    "deploy/lms.service",
    "deploy/lms.env.example",
    "docs/deployment.md",
];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// Returns the environment variables of every server setting, from the clap definitions.
fn settings() -> BTreeSet<String> {
    lms::config::Config::augment_args(clap::Command::new("lms"))
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// Returns every `LMS_<NAME>` and `DATABASE_URL` word of `text` (not the pattern `LMS_*`).
fn named_settings(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            (word.len() > "LMS_".len() && word.starts_with("LMS_")) || *word == "DATABASE_URL"
        })
        .map(str::to_owned)
        .collect()
}

/// Returns the value of the first `key=value` line of a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key}= is missing"))
}

#[test]
fn every_setting_named_in_the_deployment_files_is_a_real_setting() {
    let settings = settings();
    assert!(settings.contains("LMS_LISTEN"), "{settings:?}");
    for file in FILES {
        let named = named_settings(&read(file));
        let unknown: Vec<_> = named.difference(&settings).collect();
        assert!(
            unknown.is_empty(),
            "{file} names unknown settings {unknown:?}"
        );
    }
    let example = named_settings(&read("deploy/lms.env.example"));
    for needed in [
        "LMS_LISTEN",
        "DATABASE_URL",
        "LMS_PUBLIC_URL",
        "LMS_ISSUER_SEED_FILE",
    ] {
        assert!(example.contains(needed), "lms.env.example lacks {needed}");
    }
}

#[test]
fn the_image_runs_unprivileged_and_probes_the_port_it_exposes() {
    let dockerfile = read("deploy/Dockerfile");
    let instruction = |name: &str| -> Vec<String> {
        dockerfile
            .lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|rest| rest.trim().to_owned())
            .collect()
    };
    let users = instruction("USER");
    assert_eq!(users.len(), 1, "{users:?}");
    let user = users[0].split(':').next().unwrap_or_default();
    assert!(!["root", "0", ""].contains(&user), "runs as {user}");

    let listen = dockerfile
        .split_whitespace()
        .find_map(|word| word.strip_prefix("LMS_LISTEN="))
        .expect("the image sets LMS_LISTEN");
    let listen: std::net::SocketAddr = listen.parse().expect("LMS_LISTEN is an address");
    assert!(
        listen.ip().is_unspecified(),
        "reachable from outside the container: {listen}"
    );
    assert_eq!(instruction("EXPOSE"), [listen.port().to_string()]);

    // The probe runs with the image's environment: `lms health` finds the port from LMS_LISTEN.
    assert!(
        dockerfile.contains(r#"CMD ["lms", "health""#),
        "HEALTHCHECK uses lms health"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_lms"))
        .args(["health", "--help"])
        .output()
        .expect("run lms health --help");
    assert!(help.status.success(), "lms health exists");
    assert!(instruction("VOLUME").contains(&r#"["/data"]"#.to_owned()));
}

#[test]
fn the_unit_waits_longer_than_the_shutdown_grace_before_killing() {
    let unit = read("deploy/lms.service");
    let stop = humantime::parse_duration(unit_value(&unit, "TimeoutStopSec")).expect("a duration");
    let grace = lms::config::DEFAULT_SHUTDOWN_GRACE;
    assert!(
        stop >= grace + Duration::from_secs(5),
        "{stop:?} vs grace {grace:?}"
    );
    assert_eq!(unit_value(&unit, "ExecStart"), "/usr/local/bin/lms serve");
    assert_eq!(unit_value(&unit, "EnvironmentFile"), "/etc/lms/lms.env");
    assert_eq!(unit_value(&unit, "StateDirectory"), "lms");
    assert_eq!(
        unit_value(&unit, "Environment"),
        "LMS_DATA_DIR=/var/lib/lms"
    );
    for hardening in ["NoNewPrivileges", "DynamicUser"] {
        assert_eq!(unit_value(&unit, hardening), "yes");
    }
    assert_eq!(unit_value(&unit, "ProtectSystem"), "strict");
}
