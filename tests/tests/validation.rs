//! Bad input gets a clear status and stores nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CreateEnrollmentRequest, CreateOtpAuthenticationRequest, GetTransactionRequest,
};
use assent_server::domain::ApplicationId;
use assent_tests::{TestApp, TestDb, TestDevice, TestServer, rp_client};
use tonic::Code;

/// Number of events the application has; every stored change appends one.
async fn event_count(db: &TestDb, app: &TestApp) -> usize {
    let app_id = ApplicationId::parse(&app.id).unwrap();
    db.store()
        .await
        .events_after(app_id, 0, 10_000)
        .await
        .unwrap()
        .len()
}

async fn malformed_input_is_invalid_argument_and_stores_nothing(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;

    let cases: Vec<(&str, CreateOtpAuthenticationRequest, &str)> = vec![
        (
            "control characters in the message",
            CreateOtpAuthenticationRequest {
                message: "Log in?\u{1b}[2J".to_owned(),
                ..Default::default()
            },
            "message",
        ),
        (
            "empty message",
            CreateOtpAuthenticationRequest::default(),
            "message",
        ),
        (
            "message over 200 characters",
            CreateOtpAuthenticationRequest {
                message: "x".repeat(201),
                ..Default::default()
            },
            "message",
        ),
        (
            "ttl out of range",
            CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                ttl_seconds: 5,
                ..Default::default()
            },
            "ttl_seconds",
        ),
        (
            "upper-case context key",
            CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                context: [("Browser".to_owned(), "Firefox".to_owned())].into(),
                ..Default::default()
            },
            "context",
        ),
        (
            "user id with a newline",
            CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                user_id: "alice\n".to_owned(),
                ..Default::default()
            },
            "user_id",
        ),
    ];
    for (what, request, field) in cases {
        let status = rp
            .create_otp_authentication(request)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} must be refused"));
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert!(
            status.message().starts_with(field),
            "{what}: {}",
            status.message()
        );
    }
    let status = rp
        .create_enrollment(CreateEnrollmentRequest {
            user_id: String::new(),
            ttl_seconds: 0,
        })
        .await
        .expect_err("an empty user id must be refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = rp
        .get_transaction(GetTransactionRequest {
            transaction_id: "42".to_owned(),
        })
        .await
        .expect_err("a malformed id must be refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(event_count(&db, &app).await, 0, "nothing was stored");
}

async fn oversized_request_is_resource_exhausted_and_stores_nothing(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let status = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            context: [("blob".to_owned(), "x".repeat(70 * 1024))].into(),
            ..Default::default()
        })
        .await
        .expect_err("a request over 64 KiB must be refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("64 KiB"));
    assert_eq!(event_count(&db, &app).await, 0, "nothing was stored");
}

async fn malformed_base64_otp_is_rejected_as_invalid_argument(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let before = event_count(&db, &app).await;
    for bad in ["not base64 at all!", "QUJD", ""] {
        let Body::Rejection(rejection) = stream.submit(bad).await else {
            panic!("{bad:?} must be rejected");
        };
        assert_eq!(
            Code::from_i32(rejection.code),
            Code::InvalidArgument,
            "{bad:?}"
        );
        assert!(rejection.message.contains("otp"));
    }
    assert_eq!(event_count(&db, &app).await, before, "nothing was stored");
}

async fn five_bad_otps_cool_the_device_off(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;
    let wrong = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([7u8; 48])
    };
    for _ in 0..5 {
        let Body::Rejection(rejection) = stream.submit(&wrong).await else {
            panic!("a wrong OTP must be rejected");
        };
        assert_eq!(Code::from_i32(rejection.code), Code::NotFound);
    }
    // Even a genuine OTP is refused during the cooling-off period.
    let genuine = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let Body::Rejection(rejection) = stream.submit(&genuine.otp).await else {
        panic!("a cooled-off device must be refused");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::ResourceExhausted);
    assert!(rejection.message.contains("too many"));
}

async fn missing_or_wrong_api_key_is_unauthenticated(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut wrong_secret = app.api_key.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    for key in ["", "nonsense", wrong_secret.as_str()] {
        let mut rp = rp_client(&server, key).await;
        let status = rp
            .get_transaction(GetTransactionRequest {
                transaction_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .expect_err("must be refused");
        assert_eq!(status.code(), Code::Unauthenticated, "key {key:?}");
    }
}

/// Bidirectional overrides and isolates, zero-width characters, the byte
/// order mark, line and paragraph separators, private-use and unassigned
/// code points: each could make a login request read as something else.
const SPOOFING: [char; 9] = [
    '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{2028}', '\u{2029}', '\u{E000}', '\u{0378}',
    '\u{0085}',
];

async fn text_shown_on_a_device_must_be_plain(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let before = event_count(&db, &app).await;
    for c in SPOOFING {
        let code_point = format!("U+{:04X}", u32::from(c));
        let message = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: format!("Log in to Shop{c}?"),
                ..Default::default()
            })
            .await
            .expect_err("a spoofing character in the message");
        assert_eq!(message.code(), Code::InvalidArgument);
        assert!(
            message.message().contains(&code_point) && message.message().contains("character 15 "),
            "{}",
            message.message()
        );
        let context = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                context: [("browser".to_owned(), format!("Firefox{c}"))].into(),
                ..Default::default()
            })
            .await
            .expect_err("a spoofing character in a context value");
        assert_eq!(context.code(), Code::InvalidArgument);
        assert!(
            context.message().starts_with("context:"),
            "{}",
            context.message()
        );
        let code = assent_tests::enrollment_code(&mut rp, "alice").await;
        let named = TestDevice::enroll_named(&server, &code, &format!("phone{c}"))
            .await
            .err()
            .expect("a spoofing character in a device name");
        assert_eq!(named.code(), Code::InvalidArgument);
        assert!(named.message().contains(&code_point), "{}", named.message());
    }
    assert_eq!(event_count(&db, &app).await, before, "nothing was stored");
    // Plain text in any script is fine, and stored as NFC.
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Caf\u{0065}\u{0301} Zürich 東京?".to_owned(),
            ..Default::default()
        })
        .await
        .expect("plain text")
        .into_inner();
    let stored = assent_tests::transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(stored.message, "Caf\u{00E9} Zürich 東京?");
}

assent_tests::on_both_engines!(
    text_shown_on_a_device_must_be_plain,
    malformed_input_is_invalid_argument_and_stores_nothing,
    oversized_request_is_resource_exhausted_and_stores_nothing,
    malformed_base64_otp_is_rejected_as_invalid_argument,
    five_bad_otps_cool_the_device_off,
    missing_or_wrong_api_key_is_unauthenticated,
);
