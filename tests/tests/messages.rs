//! Messages a person meets in the first hour say what happened and what to
//! do, and a refused start creates nothing first.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use assent_tests::binary;

fn server(args: &[&str], data_dir: &Path) -> Output {
    Command::new(binary("assent-server"))
        .args(args)
        .env("ASSENT_DATA_DIR", data_dir)
        .env_remove("ASSENT_CONFIG")
        .env_remove("ASSENT_DATABASE_URL")
        .env_remove("ASSENT_LISTEN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_mistyped_database_scheme_is_named_with_the_schemes_that_work() {
    let dir = assent_tests::scratch_dir("msg");
    let output = server(
        &[
            "--database-url",
            "postgress://u:secret@db/assent",
            "app",
            "list",
        ],
        &dir,
    );
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains("\"postgress\""),
        "names what was given: {said}"
    );
    assert!(said.contains("postgres://"), "names the remedy: {said}");
    assert!(!said.contains("secret"), "never echoes the URL: {said}");
}

#[test]
fn an_unreachable_postgres_names_host_and_cause() {
    let dir = assent_tests::scratch_dir("msg");
    let output = server(
        &[
            "--database-url",
            "postgres://postgres@127.0.0.1:1/assent",
            "app",
            "list",
        ],
        &dir,
    );
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains("cannot connect to PostgreSQL at 127.0.0.1:1"),
        "names where: {said}"
    );
    assert!(said.to_lowercase().contains("refused"), "names why: {said}");
    assert!(
        said.contains("ASSENT_DATABASE_URL"),
        "names what to fix: {said}"
    );
    assert!(!said.contains("pool timed out"), "{said}");
}

#[test]
fn plaintext_beyond_loopback_is_refused_before_anything_is_created() {
    let dir = assent_tests::scratch_dir("msg");
    let output = server(&["serve", "--listen", "0.0.0.0:0"], &dir);
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.contains("ASSENT_TLS_CERT"), "names the remedy: {said}");
    assert!(said.contains("--insecure-plaintext"), "{said}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("running"), "no banner first: {stdout}");
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing was created in the data directory"
    );
}

#[test]
fn one_shot_commands_print_their_answer_without_log_lines_or_colour() {
    let dir = assent_tests::scratch_dir("msg");
    let output = server(&["app", "create", "--name", "Shop", "--json"], &dir);
    assert!(output.status.success(), "{output:?}");
    let said = stderr(&output);
    assert!(
        said.is_empty(),
        "no INFO lines on a one-shot command: {said}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains('\u{1b}'), "no colour codes off a terminal");
    let created: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(created["api_key"].as_str().unwrap().starts_with("ak_"));
}

#[test]
fn help_names_the_variables_and_subcommands_only_their_own_flags() {
    let help = |program: &str, args: &[&str]| {
        let output = Command::new(binary(program))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let server = help("assent-server", &[]);
    for variable in [
        "ASSENT_CONFIG",
        "ASSENT_LISTEN",
        "ASSENT_DATABASE_URL",
        "ASSENT_DATA_DIR",
    ] {
        assert!(
            server.contains(variable),
            "assent-server --help lacks {variable}"
        );
    }
    assert!(server.contains("docs/configuration.md"));
    let create = help("assent-server", &["app", "create"]);
    assert!(!create.contains("--listen"), "{create}");
    assert!(!create.contains("--tls-cert"), "{create}");
    assert!(help("assent-server", &["serve"]).contains("--listen"));
    let agent = help("assent-agent", &[]);
    assert!(agent.contains("ASSENT_AGENT_DIR"));
    assert!(
        agent.contains(".local/state/assent-agent"),
        "the default state directory"
    );
    let cli = help("assent", &[]);
    assert!(
        cli.contains("ASSENT_API_KEY") && cli.contains("ASSENT_SERVER"),
        "{cli}"
    );
}
