//! The partial indexes of both engines' migrations keep their own literal
//! state lists (a migration is frozen once shipped); the domain is where
//! those sets are defined. These cases fail when the two disagree, in
//! either dialect, so a change to the domain's open states comes with a
//! migration.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use assent_server::domain::{TransactionKind, TransactionState};

/// Every migration of one engine, in order.
fn migrations(engine: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(engine);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

/// The `WHERE` clause of the index's latest definition.
fn predicate(engine: &str, index: &str) -> String {
    let create = format!(" {index} ON ");
    let mut latest = None;
    for sql in migrations(engine) {
        let mut rest = sql.as_str();
        while let Some(at) = rest.find(&create) {
            let statement = &rest[at..];
            let statement = &statement[..statement.find(';').unwrap()];
            let clause = statement.split_once("WHERE").unwrap().1;
            latest = Some(clause.split_whitespace().collect::<Vec<_>>().join(" "));
            rest = &rest[at + create.len()..];
        }
    }
    latest.unwrap_or_else(|| panic!("{engine}: no index {index}"))
}

/// The quoted literals of a predicate, in order.
fn literals(clause: &str) -> Vec<String> {
    clause
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn open_states() -> BTreeSet<String> {
    TransactionState::OPEN
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

fn check_engine(engine: &str) {
    let expiry = predicate(engine, "transactions_open_expiry");
    assert!(expiry.starts_with("state IN ("), "{engine}: {expiry}");
    let listed: BTreeSet<String> = literals(&expiry).into_iter().collect();
    assert_eq!(listed, open_states(), "{engine}: transactions_open_expiry");

    let device_open = predicate(engine, "transactions_device_open");
    assert_eq!(
        literals(&device_open),
        [TransactionKind::Otp.decided_from().as_str()],
        "{engine}: transactions_device_open"
    );

    let one_open_push = predicate(engine, "transactions_one_open_push");
    assert_eq!(
        literals(&one_open_push),
        [
            TransactionKind::Push.as_str(),
            TransactionKind::Push.decided_from().as_str()
        ],
        "{engine}: transactions_one_open_push: {one_open_push}"
    );
    let open_push_states =
        BTreeSet::from([TransactionKind::Push.decided_from().as_str().to_owned()]);
    assert!(open_push_states.is_subset(&open_states()));
}

#[test]
fn postgres_partial_indexes_select_the_domains_open_states() {
    check_engine("postgres");
}

#[test]
fn sqlite_partial_indexes_select_the_domains_open_states() {
    check_engine("sqlite");
}

#[test]
fn a_partial_index_naming_another_state_set_is_noticed() {
    let clause = "state IN ('PENDING', 'SCANNED', 'EXPIRED')";
    let listed: BTreeSet<String> = literals(clause).into_iter().collect();
    assert_ne!(listed, open_states());
}
