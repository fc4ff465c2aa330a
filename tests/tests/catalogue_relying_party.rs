//! Catalogue cases at the relying party's side (docs/security.md, "Attack
//! and fault classes"), each test named after its case: #10 an outcome of
//! another transaction, and #38 an outcome bound to another browser
//! session, never verify as the login a backend is waiting for; #26
//! enrollment codes live 60 s to 24 h and an expired one is refused like an
//! unknown one; #40 a `Subscribe` stream that never reads holds up no one
//! and loses nothing (and is reset once its key is revoked); #30 a revoked
//! key's stream ends within a second, also amid a long backlog; #51 no
//! status a client sees carries SQL, a table, an index or a constraint
//! name, whatever the database said.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreateEnrollmentRequest, CreateOtpAuthenticationRequest,
    CreatePushAuthenticationRequest, Event, GetTransactionRequest, ListDevicesRequest,
    ListServerKeysRequest, SubscribeRequest, Transaction, TransactionState, WaitTransactionRequest,
};
use assent_proto::verify::{self, VerifyError};
use assent_server::domain::{Clock as _, ManualClock};
use assent_tests::harness::rp_client_on;
use assent_tests::{RpClient, TcpTap, TestApp, TestDb, TestDevice, TestServer, rp_client, within};
use tonic::{Code, Status};

fn otp_request(binding: &[u8]) -> CreateOtpAuthenticationRequest {
    CreateOtpAuthenticationRequest {
        message: "Log in to Example Shop?".to_owned(),
        binding: binding.to_vec(),
        ..Default::default()
    }
}

/// The transaction and its latest (server-signed) event.
async fn outcome(rp: &mut RpClient, id: &str) -> (Transaction, Event) {
    let answer = rp
        .get_transaction(GetTransactionRequest {
            transaction_id: id.to_owned(),
        })
        .await
        .expect("get")
        .into_inner();
    (
        answer.transaction.expect("transaction"),
        answer.last_event.expect("an event"),
    )
}

/// Creates an OTP login bound to `binding`; `device` accepts it when given.
async fn login(
    server: &TestServer,
    rp: &mut RpClient,
    binding: &[u8],
    device: Option<&TestDevice>,
) -> String {
    let created = rp
        .create_otp_authentication(otp_request(binding))
        .await
        .expect("create")
        .into_inner();
    if let Some(device) = device {
        let mut stream = device.connect(server).await.expect("connect");
        let request = stream.scan(&created.otp).await;
        let answer = stream
            .decide(device.decision(&request, SignedVerdict::Accept, ""))
            .await;
        assert!(matches!(answer, Body::DecisionResult(_)), "{answer:?}");
    }
    created.transaction_id
}

// ---- #10, #38: outcomes handed to the wrong login ----

async fn case_10_an_outcome_of_another_transaction_does_not_verify_as_this_ones(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let keys = rp
        .list_server_keys(ListServerKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    // The login the backend waits for (still pending), and another one the
    // device accepted — same application, same binding, same user.
    let waited_for = login(&server, &mut rp, b"session", None).await;
    let other = login(&server, &mut rp, b"session", Some(&phone)).await;
    let (other_tx, other_event) = outcome(&mut rp, &other).await;
    assert_eq!(other_tx.state(), TransactionState::Accepted);
    verify::verify_event(&other_event, &keys).expect("the genuine event verifies");
    verify::verify_decision(&other_tx, None).expect("the genuine decision verifies");
    // Handed over as the waited-for login's outcome: neither the server's
    // signature over the event nor the device's over its decision holds.
    let mut relabelled = other_event.clone();
    relabelled.transaction_id.clone_from(&waited_for);
    assert!(
        matches!(
            verify::verify_event(&relabelled, &keys),
            Err(VerifyError::BadSignature(_))
        ),
        "an event relabelled to another transaction must not verify"
    );
    let mut relabelled = other_tx.clone();
    relabelled.transaction_id.clone_from(&waited_for);
    assert!(
        matches!(
            verify::verify_decision(&relabelled, None),
            Err(VerifyError::BadSignature(_))
        ),
        "a decision relabelled to another transaction must not verify"
    );
    // The waited-for login's own record has no decision to show.
    let (mine, _) = outcome(&mut rp, &waited_for).await;
    assert_eq!(mine.state(), TransactionState::Pending);
    assert_eq!(
        verify::verify_decision(&mine, None),
        Err(VerifyError::NoDecision)
    );
    // Another application's accepted outcome, relabelled to this one.
    let shop_b = TestApp::create(&db, "Other Shop").await;
    let mut rp_b = rp_client(&server, &shop_b.api_key).await;
    let tablet = TestDevice::enroll(&server, &shop_b, "alice").await;
    let foreign = login(&server, &mut rp_b, b"session", Some(&tablet)).await;
    let (_, mut foreign_event) = outcome(&mut rp_b, &foreign).await;
    foreign_event.application_id.clone_from(&app.id);
    foreign_event.transaction_id.clone_from(&waited_for);
    assert!(matches!(
        verify::verify_event(&foreign_event, &keys),
        Err(VerifyError::BadSignature(_))
    ));
}

async fn case_38_an_outcome_bound_to_another_session_does_not_verify_with_this_sessions_binding(
    db: TestDb,
) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let keys = rp
        .list_server_keys(ListServerKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    const MINE: &[u8] = b"sha256(session of the victim's browser)";
    const THEIRS: &[u8] = b"sha256(session of the attacker's browser)";
    // The attacker's session gets an accepted login; the victim's session
    // is handed its outcome (a session swap).
    let theirs = login(&server, &mut rp, THEIRS, Some(&phone)).await;
    let (tx, event) = outcome(&mut rp, &theirs).await;
    // Every read of it says whose session it belongs to, signed.
    assert_eq!(tx.binding, THEIRS);
    assert_eq!(event.binding, THEIRS);
    let waited = rp
        .wait_transaction(WaitTransactionRequest {
            transaction_id: theirs.clone(),
            timeout_ms: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waited.transaction.unwrap().binding, THEIRS);
    assert_eq!(waited.last_event.unwrap().binding, THEIRS);
    let mut stream = rp
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0;
    while seen < 3 {
        let streamed = within(5, "events", stream.message())
            .await
            .unwrap()
            .unwrap();
        if streamed.transaction_id == theirs {
            assert_eq!(streamed.binding, THEIRS, "{}", streamed.r#type);
            verify::verify_event(&streamed, &keys).expect("verifies as bound");
            seen += 1;
        }
    }
    // Rebinding it to the victim's session breaks the server's signature.
    let mut rebound = event.clone();
    rebound.binding = MINE.to_vec();
    assert!(matches!(
        verify::verify_event(&rebound, &keys),
        Err(VerifyError::BadSignature(_))
    ));
    // No binding at all is a binding too.
    rebound.binding.clear();
    assert!(matches!(
        verify::verify_event(&rebound, &keys),
        Err(VerifyError::BadSignature(_))
    ));
    // The binding is the one given at creation: it is not changed by the
    // device's decision and cannot be given again for the same login.
    let (again, _) = outcome(&mut rp, &theirs).await;
    assert_eq!(again.binding, THEIRS);
}

// ---- #26: enrollment code lifetimes ----

async fn case_26_an_enrollment_code_lives_its_ttl_from_60_s_to_24_h_and_is_refused_after(
    db: TestDb,
) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = TestServer::start_with_clock(&db, Arc::clone(&clock)).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let create = |ttl_seconds: u32| CreateEnrollmentRequest {
        user_id: "alice".to_owned(),
        ttl_seconds,
    };
    for ttl in [1, 59, 86_401, u32::MAX] {
        let status = rp
            .create_enrollment(create(ttl))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{ttl}: {status:?}");
        assert!(status.message().contains("ttl"), "{status:?}");
    }
    let lifetime = |created: &assent_proto::v1::CreateEnrollmentResponse| {
        created.expires_at.unwrap().seconds - clock.now().timestamp()
    };
    let default = rp.create_enrollment(create(0)).await.unwrap().into_inner();
    assert_eq!(lifetime(&default), 600, "the default is 10 min");
    let shortest = rp.create_enrollment(create(60)).await.unwrap().into_inner();
    assert_eq!(lifetime(&shortest), 60);
    let day = rp
        .create_enrollment(create(86_400))
        .await
        .unwrap()
        .into_inner();
    let last_second = rp
        .create_enrollment(create(86_400))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lifetime(&day), 86_400);
    // An unknown code's refusal, to compare with an expired code's.
    let unknown = {
        let mut code = shortest.code.clone().into_bytes();
        code[20] = if code[20] == b'A' { b'B' } else { b'A' };
        String::from_utf8(code).unwrap()
    };
    let unknown = TestDevice::enroll_with_code(&server, &unknown)
        .await
        .err()
        .expect("an unknown code is refused");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    // At its last second a code works; at its end it is refused, exactly
    // as an unknown code is.
    clock.advance(Duration::from_secs(59));
    TestDevice::enroll_with_code(&server, &default.code)
        .await
        .expect("a 10 min code at 59 s");
    clock.advance(Duration::from_secs(1));
    let expired = TestDevice::enroll_with_code(&server, &shortest.code)
        .await
        .err()
        .expect("a 60 s code at 60 s is refused");
    assert_eq!(
        (expired.code(), expired.message()),
        (unknown.code(), unknown.message())
    );
    clock.advance(Duration::from_secs(86_400 - 60 - 1));
    TestDevice::enroll_with_code(&server, &last_second.code)
        .await
        .expect("a 24 h code one second before its end");
    clock.advance(Duration::from_secs(1));
    let expired = TestDevice::enroll_with_code(&server, &day.code)
        .await
        .err()
        .expect("a 24 h code at 24 h is refused");
    assert_eq!(
        (expired.code(), expired.message()),
        (unknown.code(), unknown.message())
    );
}

// ---- #40: a Subscribe stream that never reads ----

async fn case_40_a_subscriber_that_never_reads_holds_up_no_one_and_loses_nothing(db: TestDb) {
    const EVENTS: usize = 400;
    let server = TestServer::start_with(&db, |config| config.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    // A subscriber on its own connection with 1 KiB windows that stops
    // reading at once; the same for a second key that will be revoked.
    let tap = TcpTap::start(server.addr).await;
    let mut stalled = rp_client_on(tap.slow_reader_channel(1024).await, &app.api_key)
        .subscribe(SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let store = db.store().await;
    let app_id = assent_server::domain::ApplicationId::parse(&app.id).unwrap();
    let (second_key_id, second_key) = assent_server::admin::add_api_key(store.as_ref(), app_id)
        .await
        .unwrap();
    let mut stalled_revoked = rp_client_on(tap.slow_reader_channel(1024).await, &second_key)
        .subscribe(SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let mut reader = rp
        .subscribe(SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let mut created = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let answer = rp
            .create_otp_authentication(otp_request(b""))
            .await
            .expect("create while a subscriber stalls")
            .into_inner();
        created.push(answer.transaction_id);
    }
    // A reading subscriber of the same application gets every event.
    let mut read = Vec::with_capacity(EVENTS);
    within(10, "every event at the reading subscriber", async {
        while read.len() < EVENTS {
            read.push(reader.message().await.unwrap().unwrap().transaction_id);
        }
    })
    .await;
    assert_eq!(read, created);
    // Its key revoked while it does not read: it cannot be told, so within
    // a second its stream is reset; reading again, it finds only what its
    // own windows held, then the end.
    assent_server::admin::revoke_api_key(store.as_ref(), app_id, second_key_id)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut before = 0;
    let ended = within(10, "the revoked stream to end", async {
        loop {
            match stalled_revoked.message().await {
                Ok(Some(_)) => before += 1,
                Ok(None) => panic!("ended without a status after {before} events"),
                Err(status) => return status,
            }
        }
    })
    .await;
    assert!(
        before < 32,
        "a revoked key's stalled stream went on for {before} events: {ended:?}"
    );
    // RST_STREAM(CANCEL), as tonic reports it.
    assert_eq!(ended.code(), Code::Cancelled, "{ended:?}");
    // The stalled subscriber, reading at last, gets every event once, in
    // cursor order.
    let mut cursors = Vec::with_capacity(EVENTS);
    let mut late = Vec::with_capacity(EVENTS);
    within(10, "every event at the stalled subscriber", async {
        while late.len() < EVENTS {
            let event = stalled.message().await.unwrap().unwrap();
            cursors.push(event.cursor);
            late.push(event.transaction_id);
        }
    })
    .await;
    assert_eq!(late, created);
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
}

// ---- #30: a revoked key's stream ends within a second ----

async fn case_30_a_revoked_keys_stream_ends_within_a_second_even_amid_a_long_backlog(db: TestDb) {
    const EVENTS: usize = 1200;
    let server = TestServer::start_with(&db, |config| config.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    for _ in 0..EVENTS {
        rp.create_otp_authentication(otp_request(b""))
            .await
            .expect("create");
    }
    // A second key replays the backlog through small windows, so the
    // server waits on it while it pauses.
    let store = db.store().await;
    let app_id = assent_server::domain::ApplicationId::parse(&app.id).unwrap();
    let (key_id, key) = assent_server::admin::add_api_key(store.as_ref(), app_id)
        .await
        .unwrap();
    let tap = TcpTap::start(server.addr).await;
    let mut replay = rp_client_on(tap.slow_reader_channel(8 * 1024).await, &key)
        .subscribe(SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    // It reads on, an event every 2 ms (a backlog of 1 200 takes it
    // seconds); after 100 the key is revoked.
    let mut received = 0;
    let mut revoked_at = None;
    let ended = within(20, "the revoked stream to end", async {
        loop {
            match replay.message().await {
                Ok(Some(_)) => received += 1,
                Ok(None) => panic!("ended without a status after {received} events"),
                Err(status) => return status,
            }
            if received == 100 {
                assent_server::admin::revoke_api_key(store.as_ref(), app_id, key_id)
                    .await
                    .unwrap();
                revoked_at = Some(std::time::Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let took = revoked_at.expect("revoked mid-backlog").elapsed();
    // Told UNAUTHENTICATED between pages, or reset while its send waits.
    assert!(
        matches!(ended.code(), Code::Unauthenticated | Code::Cancelled),
        "{ended:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "the stream ended {took:?} after the revocation"
    );
    assert!(
        received < EVENTS - 256,
        "a revoked key's stream went on for {received} of {EVENTS} events"
    );
}

// ---- #51: database errors say nothing about the database ----

/// Words no status a client sees may carry: SQL, the engines' own words,
/// and every table, index and constraint name (the canary `zz_assent`
/// names are the ones this test adds).
const FORBIDDEN: &[&str] = &[
    "select ",
    "insert ",
    "update ",
    "delete ",
    " from ",
    " where ",
    "relation",
    "constraint",
    "violates",
    "duplicate key",
    "unique",
    "sqlstate",
    "sqlx",
    "sqlite",
    "postgres",
    "syntax",
    "no such table",
    "zz_assent",
    "api_keys",
    "applications",
    "checkpoints",
    "enrollments",
    "otp_failures",
    "presence",
    "server_keys",
    "devices_",
    "transactions_",
    "events_",
];

/// Everything of `status` a client sees: code, message, details, metadata.
fn seen(status: &Status) -> String {
    format!(
        "{:?} {} {} {:?}",
        status.code(),
        status.message(),
        String::from_utf8_lossy(status.details()),
        status.metadata()
    )
}

fn assert_says_no_sql(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for word in FORBIDDEN {
        assert!(
            !lower.contains(word),
            "{what}: a client sees {word:?} in {text:?}"
        );
    }
}

/// Runs `sql` on the test database outside the server.
async fn execute(db: &TestDb, statements: &[&str]) {
    use sqlx::Connection as _;
    if db.is_sqlite() {
        let mut connection = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    } else {
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    }
}

async fn case_51_database_errors_reach_no_client_as_sql_or_schema_names(db: TestDb) {
    let server = TestServer::start_with(&db, |config| config.db_statement_timeout_ms = 300).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = phone.connect(&server).await.expect("connect");
    // A duplicate: the same public key enrolled twice in one application.
    let code = assent_tests::enrollment_code(&mut rp, "alice").await;
    let public_key = phone.key.verifying_key().to_bytes().to_vec();
    let proof = ed25519_dalek::Signer::sign(
        &phone.key,
        &assent_proto::signing::enroll_bytes(&code, &public_key, "again"),
    );
    let duplicate =
        assent_proto::v1::device_service_client::DeviceServiceClient::new(server.channel().await)
            .enroll(assent_proto::v1::EnrollRequest {
                code,
                public_key,
                device_name: "again".to_owned(),
                proof: proof.to_bytes().to_vec(),
            })
            .await
            .expect_err("a duplicate key is refused");
    assert_eq!(duplicate.code(), Code::FailedPrecondition, "{duplicate:?}");
    assert_says_no_sql("duplicate public key", &seen(&duplicate));
    // A duplicate open push for one user (a unique index decides it).
    let push = CreatePushAuthenticationRequest {
        user_id: "alice".to_owned(),
        message: "Log in?".to_owned(),
        ..Default::default()
    };
    let open_push = rp
        .create_push_authentication(push.clone())
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    let second = rp
        .create_push_authentication(push)
        .await
        .expect_err("a second open push is refused");
    assert_says_no_sql("second open push", &seen(&second));
    // Writes the database refuses, with a constraint or trigger of a
    // telling name, and a table gone.
    if db.is_sqlite() {
        execute(
            &db,
            &[
                "CREATE TRIGGER zz_assent_trigger BEFORE INSERT ON transactions \
                 BEGIN SELECT RAISE(ABORT, 'zz_assent_trigger refuses'); END",
                "ALTER TABLE enrollments RENAME TO zz_assent_enrollments",
                "CREATE TRIGGER zz_assent_devices BEFORE UPDATE ON devices \
                 BEGIN SELECT RAISE(ABORT, 'zz_assent_devices refuses'); END",
            ],
        )
        .await;
    } else {
        execute(
            &db,
            &[
                "ALTER TABLE transactions ADD CONSTRAINT zz_assent_check CHECK (false) NOT VALID",
                "ALTER TABLE enrollments RENAME TO zz_assent_enrollments",
                "CREATE FUNCTION zz_assent_refuse() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'zz_assent_refuse refuses'; END $$",
                "CREATE TRIGGER zz_assent_devices BEFORE UPDATE ON devices \
                 FOR EACH ROW EXECUTE FUNCTION zz_assent_refuse()",
            ],
        )
        .await;
    }
    let refused = rp
        .create_otp_authentication(otp_request(b""))
        .await
        .expect_err("the database refuses the insert");
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert_says_no_sql("refused insert", &seen(&refused));
    let gone = rp
        .create_enrollment(CreateEnrollmentRequest {
            user_id: "bob".to_owned(),
            ttl_seconds: 0,
        })
        .await
        .expect_err("the table is gone");
    assert_eq!(gone.code(), Code::Internal, "{gone:?}");
    assert_says_no_sql("missing table", &seen(&gone));
    // The device's strike (an update of its row) refused by the database:
    // the device is told in the server's words too.
    let otp = "A".repeat(64);
    let mut answer = within(15, "the device's answer", stream.submit(&otp)).await;
    // The open push may be asked first.
    while let Body::ConfirmationRequest(_) = answer {
        answer = within(15, "the device's answer", stream.next())
            .await
            .expect("stream")
            .expect("a message");
    }
    match answer {
        Body::Rejection(rejection) => {
            let failed = [Code::Internal as i32, Code::Unavailable as i32];
            assert!(failed.contains(&rejection.code), "{rejection:?}");
            assert_says_no_sql("device rejection", &rejection.message);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // A locked table: the statement times out (PostgreSQL) or the busy
    // timeout passes (SQLite); the client is told
    // UNAVAILABLE in its own words.
    let locked = if db.is_sqlite() {
        Locked::sqlite(&db).await
    } else {
        Locked::postgres(&db).await
    };
    let timed_out = within(
        15,
        "the locked write",
        rp.cancel_transaction(CancelTransactionRequest {
            transaction_id: open_push.clone(),
        }),
    )
    .await
    .expect_err("the table is locked");
    assert_eq!(timed_out.code(), Code::Unavailable, "{timed_out:?}");
    assert_says_no_sql("locked table", &seen(&timed_out));
    if !db.is_sqlite() {
        // PostgreSQL's lock holds reads up too.
        let timed_out = within(
            15,
            "the locked read",
            rp.list_devices(ListDevicesRequest::default()),
        )
        .await
        .expect_err("the table is locked");
        assert_eq!(timed_out.code(), Code::Unavailable, "{timed_out:?}");
        assert_says_no_sql("locked read", &seen(&timed_out));
    }
    drop(locked);
}

/// A lock held on the test database from outside the server until dropped.
enum Locked {
    Postgres(#[allow(dead_code)] sqlx::PgConnection),
    Sqlite(#[allow(dead_code)] sqlx::SqliteConnection),
}

impl Locked {
    async fn postgres(db: &TestDb) -> Self {
        use sqlx::Connection as _;
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        for sql in [
            "BEGIN",
            "LOCK TABLE devices, transactions IN ACCESS EXCLUSIVE MODE",
        ] {
            sqlx::query(sql).execute(&mut connection).await.unwrap();
        }
        Self::Postgres(connection)
    }

    async fn sqlite(db: &TestDb) -> Self {
        use sqlx::Connection as _;
        let mut connection = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut connection)
            .await
            .unwrap();
        Self::Sqlite(connection)
    }
}

assent_tests::on_both_engines!(
    case_10_an_outcome_of_another_transaction_does_not_verify_as_this_ones,
    case_38_an_outcome_bound_to_another_session_does_not_verify_with_this_sessions_binding,
    case_26_an_enrollment_code_lives_its_ttl_from_60_s_to_24_h_and_is_refused_after,
    case_40_a_subscriber_that_never_reads_holds_up_no_one_and_loses_nothing,
    case_30_a_revoked_keys_stream_ends_within_a_second_even_amid_a_long_backlog,
    case_51_database_errors_reach_no_client_as_sql_or_schema_names,
);
