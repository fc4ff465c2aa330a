//! The tamper-evident record: `assent-server audit verify` passes on an
//! untouched database and, after an event row is changed, removed or
//! inserted by SQL, fails naming that event.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use assent_proto::v1::{CancelTransactionRequest, CreateOtpAuthenticationRequest};
use assent_tests::{TestApp, TestDb, TestServer, binary, rp_client};
use serde_json::Value;
use sqlx::Connection;

/// Some events: a few logins, half of them cancelled.
async fn with_events(db: &TestDb) -> TestApp {
    let server = TestServer::start(db).await;
    let app = TestApp::create(db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    for n in 0..6 {
        let created = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: format!("Log in #{n}?"),
                binding: vec![n; 16],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if n % 2 == 0 {
            rp.cancel_transaction(CancelTransactionRequest {
                transaction_id: created.transaction_id,
            })
            .await
            .unwrap();
        }
    }
    app
}

/// `audit verify --seal --json` for the app: its report and exit status.
fn audit(db: &TestDb, app: &TestApp) -> (Value, bool) {
    let output = Command::new(binary("assent-server"))
        .args([
            "audit",
            "verify",
            "--seal",
            "--json",
            "--application",
            &app.id,
        ])
        .env("ASSENT_DATABASE_URL", &db.url)
        .env_remove("ASSENT_CONFIG")
        .output()
        .expect("run assent-server audit verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no report; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        serde_json::from_str(line).expect("a JSON report"),
        output.status.success(),
    )
}

/// Runs SQL on the test database.
async fn sql(db: &TestDb, statement: &str) {
    let statement = sqlx::AssertSqlSafe(statement.to_owned());
    if db.is_sqlite() {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
}

/// The cursor of the `n`-th event (from 0) of the log.
async fn nth_cursor(db: &TestDb, n: i64) -> i64 {
    let query = "SELECT position FROM events ORDER BY position LIMIT 1 OFFSET $1";
    if db.is_sqlite() {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(n)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(query)
            .bind(n)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

fn finding(report: &Value) -> (&str, i64) {
    let finding = &report["finding"];
    (
        finding["kind"].as_str().expect("a finding"),
        finding["cursor"].as_i64().expect("its cursor"),
    )
}

async fn an_untouched_log_verifies_and_a_changed_event_is_named(db: TestDb) {
    let app = with_events(&db).await;
    let (report, ok) = audit(&db, &app);
    assert!(ok, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["events_verified"], 9, "{report}");
    assert!(report["checkpoints"].as_i64().unwrap() >= 1);
    assert_eq!(report["events_unsealed"], 0);
    let target = nth_cursor(&db, 4).await;
    sql(
        &db,
        &format!("UPDATE events SET type = 'transaction.accepted' WHERE position = {target}"),
    )
    .await;
    let (report, ok) = audit(&db, &app);
    assert!(!ok);
    assert_eq!(finding(&report), ("changed", target), "{report}");
}

async fn a_removed_event_is_named(db: TestDb) {
    let app = with_events(&db).await;
    assert!(audit(&db, &app).1);
    let target = nth_cursor(&db, 2).await;
    sql(
        &db,
        &format!("DELETE FROM events WHERE position = {target}"),
    )
    .await;
    let (report, ok) = audit(&db, &app);
    assert!(!ok);
    assert_eq!(finding(&report), ("removed", target), "{report}");
}

async fn an_inserted_event_is_named(db: TestDb) {
    let app = with_events(&db).await;
    assert!(audit(&db, &app).1);
    let (before, after) = (nth_cursor(&db, 3).await, nth_cursor(&db, 4).await);
    assert!(after - before >= 1);
    // A forged event between two sealed ones (on PostgreSQL positions have
    // gaps; on SQLite the cursor is the row id, so take over a removed one's).
    let forged = if db.is_sqlite() {
        sql(&db, &format!("DELETE FROM events WHERE cursor = {after}")).await;
        sql(
            &db,
            &format!(
                "INSERT INTO events (cursor, application_id, type, occurred_at) \
                 VALUES ({after}, '{}', 'transaction.accepted', 0)",
                app.id
            ),
        )
        .await;
        after
    } else {
        let forged = before + 1;
        sql(
            &db,
            &format!(
                "INSERT INTO events (application_id, type, occurred_at, position) \
                 VALUES ('{}', 'transaction.accepted', now(), {forged})",
                app.id
            ),
        )
        .await;
        forged
    };
    let (report, ok) = audit(&db, &app);
    assert!(!ok);
    let (kind, cursor) = finding(&report);
    assert_eq!(cursor, forged, "{report}");
    assert!(kind == "inserted" || kind == "changed", "{report}");
}

assent_tests::on_both_engines!(
    an_untouched_log_verifies_and_a_changed_event_is_named,
    a_removed_event_is_named,
    an_inserted_event_is_named,
);
