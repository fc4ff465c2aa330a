//! What operators deploy is checked by real tools: the systemd units with
//! `systemd-analyze verify` (pointed at the binaries this build made), the
//! compose file with a Compose implementation (`docker-compose config`; no
//! Docker engine runs here), and the image's health check command against a
//! running server. `.ci/run` installs `docker-compose` when missing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use assent_tests::{TestDb, TestServer, binary, tools};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_systemd_units_verify() {
    let dir = assent_tests::scratch_dir("units");
    let bin = binary("assent-server");
    let bin_dir = bin.parent().unwrap().display().to_string();
    let mut units = Vec::new();
    for name in ["assent-server.service", "assent-agent.service"] {
        let text = std::fs::read_to_string(repo().join("deploy").join(name)).unwrap();
        for section in ["[Unit]", "[Service]", "[Install]"] {
            assert!(text.contains(section), "{name} lacks {section}");
        }
        // Point ExecStart at this build's binaries (systemd checks they exist).
        let local = text.replace("/usr/local/bin", &bin_dir);
        let path = dir.join(name);
        std::fs::write(&path, local).unwrap();
        units.push(path);
    }
    if !tools::can_run("deploy (systemd units)", &[tools::SYSTEMD_ANALYZE]) {
        return;
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_compose_file_is_valid_compose() {
    if !tools::can_run("deploy (compose file)", &[tools::DOCKER_COMPOSE]) {
        return;
    }
    let output = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert!(
        text.contains("assent-server\", \"health\""),
        "the server has a healthcheck"
    );
    assert!(
        text.contains("restart: on-failure"),
        "the agent does not restart-loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_reports_a_serving_server_and_fails_without_one() {
    let db = TestDb::sqlite();
    let mut server = TestServer::start(&db).await;
    let health = |url: &str| {
        Command::new(binary("assent-server"))
            .args(["health", "--url", url, "--timeout", "2"])
            .env_remove("ASSENT_CONFIG")
            .output()
            .unwrap()
    };
    let serving = health(&server.url());
    assert!(serving.status.success(), "{serving:?}");
    assert_eq!(String::from_utf8_lossy(&serving.stdout).trim(), "SERVING");
    let url = server.url();
    server.stop().await;
    let gone = health(&url);
    assert!(!gone.status.success());
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(said.contains("cannot reach the server"), "{said}");
}
