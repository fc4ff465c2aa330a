//! `pam_assent.so` loaded by a real PAM application (`pamtester`, with a
//! service file in a temporary directory through `pam_wrapper`) against a
//! real `assent-server` and a real `assent-agent`, both as processes.
//!
//! The module's syslog lines reach stderr through pam_wrapper
//! (`PAM_WRAPPER_DEBUGLEVEL=2`), so the tests read what it logs too.
//! pamtester runs under `stdbuf -oL` so the conversation text arrives while
//! it waits, as a person at a terminal would see it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use support::pam::{Pam, Run};
use support::processes::{Agent, Server};
use support::{can_run, free_port};

#[test]
fn an_accepting_device_lets_the_user_in_and_the_message_is_shown() {
    if !can_run("an_accepting_device_lets_the_user_in") {
        return;
    }
    let server = Server::start();
    let _agent = Agent::start(&server, "alice", "accept");
    let pam = Pam::new(
        &server.url,
        &server.api_key,
        "number_matching = false\ntimeout_seconds = 20\n\
         message = \"Test login as {user} via {service}?\"\n",
    );
    let run = pam.authenticate("alice", |_| {});
    assert!(run.succeeded, "{run}");
    assert!(run.shows("pamtester: successfully authenticated"), "{run}");
    assert!(
        run.shows("Assent: confirm on your device: \"Test login as alice via assent-test?\""),
        "{run}"
    );
    assert!(run.stderr_has("accepted: user \"alice\""), "{run}");
    assert!(run.stderr_has("the decision signature verifies"), "{run}");
}

#[test]
fn a_denying_device_keeps_the_user_out() {
    if !can_run("a_denying_device_keeps_the_user_out") {
        return;
    }
    let server = Server::start();
    let _agent = Agent::start(&server, "bob", "deny");
    let pam = Pam::new(
        &server.url,
        &server.api_key,
        "number_matching = false\ntimeout_seconds = 20\n",
    );
    let run = pam.authenticate("bob", |_| {});
    assert!(!run.succeeded, "{run}");
    assert!(run.stderr_has("pamtester: Authentication failure"), "{run}");
    assert!(run.shows("Assent: the login was not confirmed."), "{run}");
    assert!(run.stderr_has("the transaction ended DENIED"), "{run}");
}

#[test]
fn the_user_map_decides_whose_device_is_asked() {
    if !can_run("the_user_map_decides_whose_device_is_asked") {
        return;
    }
    let server = Server::start();
    let _agent = Agent::start(&server, "carol@corp", "accept");
    let settings = "number_matching = false\ntimeout_seconds = 20\n";
    let mapped = Pam::new(
        &server.url,
        &server.api_key,
        &format!("{settings}user_map = \"{{user}}@corp\"\n"),
    );
    let run = mapped.authenticate("carol", |_| {});
    assert!(run.succeeded, "{run}");
    assert!(run.stderr_has("(Assent user \"carol@corp\")"), "{run}");
    // Without the mapping "carol" has no device: the server refuses the push.
    let unmapped = Pam::new(&server.url, &server.api_key, settings);
    let run = unmapped.authenticate("carol", |_| {});
    assert!(!run.succeeded, "{run}");
    assert!(
        run.stderr_has("the server refused the push (FailedPrecondition)"),
        "{run}"
    );
}

/// An agent whose exec policy picks the number the test read from
/// pamtester's output (`right`) or another of the offered ones (`wrong`).
fn number_picking_agent(server: &Server, user: &str, dir: &Path, mode: &str) -> Agent {
    let number_file = dir.join("number");
    let script = dir.join("pick.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
request=$(cat)
i=0
while [ $i -lt 200 ]; do
  if [ -s "{number}" ]; then
    n=$(cat "{number}")
    if [ "{mode}" = wrong ]; then
      for c in $(printf '%s' "$request" | sed -n 's/.*"number_choices":\[\([0-9,]*\)\].*/\1/p' | tr , ' '); do
        if [ "$c" != "$n" ]; then n=$c; break; fi
      done
    fi
    echo "{{\"decision\":\"accept\",\"number\":$n}}"
    exit 0
  fi
  sleep 0.1
  i=$((i + 1))
done
exit 1
"#,
            number = number_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Agent::start(server, user, &format!("exec:{}", script.display()))
}

/// Runs pamtester and hands the number it shows to the agent's script.
fn authenticate_picking(pam: &Pam, user: &str, dir: &Path) -> (Run, Option<u32>) {
    let mut shown = None;
    let run = pam.authenticate(user, |line| {
        let number = line
            .strip_prefix("Assent: pick the number ")
            .and_then(|rest| rest.strip_suffix(" on your device."))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(number) = number {
            shown = Some(number);
            std::fs::write(dir.join("number"), number.to_string()).unwrap();
        }
    });
    (run, shown)
}

#[test]
fn under_number_matching_the_number_is_shown_and_the_right_pick_lets_the_user_in() {
    if !can_run("number matching (right pick)") {
        return;
    }
    let server = Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let _agent = number_picking_agent(&server, "dave", scratch.path(), "right");
    let pam = Pam::new(&server.url, &server.api_key, "timeout_seconds = 20\n");
    let (run, shown) = authenticate_picking(&pam, "dave", scratch.path());
    let shown = shown.unwrap_or_else(|| panic!("no number shown:\n{run}"));
    assert!((10..=99).contains(&shown), "{run}");
    assert!(run.succeeded, "{run}");
    // The person saw the number before answering: within the wait, not
    // after the timeout.
    assert!(
        run.took < Duration::from_secs(15),
        "took {:?}\n{run}",
        run.took
    );
}

#[test]
fn under_number_matching_a_wrong_pick_keeps_the_user_out() {
    if !can_run("number matching (wrong pick)") {
        return;
    }
    let server = Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let _agent = number_picking_agent(&server, "erin", scratch.path(), "wrong");
    let pam = Pam::new(&server.url, &server.api_key, "timeout_seconds = 20\n");
    let (run, shown) = authenticate_picking(&pam, "erin", scratch.path());
    assert!(shown.is_some(), "no number shown:\n{run}");
    assert!(!run.succeeded, "{run}");
    assert!(run.stderr_has("DENIED (wrong_number)"), "{run}");
}

#[test]
fn a_stopped_server_refuses_by_default_and_lets_in_only_with_fallback_allow() {
    if !can_run("a_stopped_server_refuses_by_default") {
        return;
    }
    let mut server = Server::start();
    server.stop();
    let deny = Pam::new(&server.url, &server.api_key, "");
    let run = deny.authenticate("frank", |_| {});
    assert!(!run.succeeded, "{run}");
    assert!(
        run.shows("Assent: the server cannot be reached; the login is refused."),
        "{run}"
    );
    assert!(run.stderr_has("fallback = deny"), "{run}");

    let allow = Pam::new(&server.url, &server.api_key, "fallback = \"allow\"\n");
    let run = allow.authenticate("frank", |_| {});
    assert!(run.succeeded, "{run}");
    assert!(
        run.stderr_has("ALLOWED WITHOUT DEVICE CONFIRMATION: user \"frank\""),
        "{run}"
    );
}

#[test]
fn a_server_that_never_answers_is_given_up_on_within_the_call_deadline() {
    if !can_run("a_server_that_never_answers") {
        return;
    }
    // Accepts TCP connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = mpsc::channel::<()>();
    let silent = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while stopped.try_recv().is_err() {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let pam = Pam::new(&url, "ak_not_a_real_key", "");
    let run = pam.authenticate("grace", |_| {});
    stop.send(()).unwrap();
    silent.join().unwrap();
    assert!(!run.succeeded, "{run}");
    assert!(run.stderr_has("the server cannot be reached"), "{run}");
    assert!(
        run.took < Duration::from_secs(25),
        "took {:?}\n{run}",
        run.took
    );
}

#[test]
fn a_settings_file_readable_by_others_is_refused_even_with_fallback_allow() {
    if !can_run("a_settings_file_readable_by_others_is_refused") {
        return;
    }
    // Nothing listens there: only the mode check stands between the user
    // and the `allow` fallback.
    let url = format!("http://127.0.0.1:{}", free_port());
    let pam = Pam::new(&url, "ak_not_a_real_key", "fallback = \"allow\"\n");
    std::fs::set_permissions(pam.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = pam.authenticate("heidi", |_| {});
    assert!(!run.succeeded, "{run}");
    assert!(run.stderr_has("has mode 0644"), "{run}");
    assert!(run.stderr_has("chmod 600"), "{run}");
}
