//! What operators and generic gRPC tools rely on: health and reflection.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_tests::{TestDb, TestServer};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn health_reports_both_services_serving(db: TestDb) {
    let server = TestServer::start(&db).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "assent.v1.RelyingPartyService",
        "assent.v1.DeviceService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
}

async fn health_reports_not_serving_as_soon_as_draining_starts(db: TestDb) {
    let mut server = TestServer::start(&db).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watches = Vec::new();
    for service in ["", "assent.v1.DeviceService"] {
        let mut watch = health
            .watch(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("watch")
            .into_inner();
        let first = watch
            .message()
            .await
            .expect("first status")
            .expect("a status");
        assert_eq!(first.status(), ServingStatus::Serving);
        watches.push(watch);
    }
    let observe = async {
        for mut watch in watches {
            let next = watch
                .message()
                .await
                .expect("an update before the stream ends");
            assert_eq!(next.map(|m| m.status()), Some(ServingStatus::NotServing));
        }
    };
    let ((), ()) = tokio::join!(
        assent_tests::within(5, "NOT_SERVING while draining", observe),
        server.stop()
    );
}

async fn reflection_lists_and_describes_the_assent_services(db: TestDb) {
    let server = TestServer::start(&db).await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("assent.v1.DeviceService".to_owned()),
    ]
    .map(|request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    });
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses
        .message()
        .await
        .expect("stream")
        .and_then(|r| r.message_response)
    else {
        panic!("expected the service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "assent.v1.RelyingPartyService",
        "assent.v1.DeviceService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = responses
        .message()
        .await
        .expect("stream")
        .and_then(|r| r.message_response)
    else {
        panic!("expected the file descriptor");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

async fn prometheus_metrics_count_what_happened(db: TestDb) {
    let (server, port) = assent_tests::metrics::server_with_metrics(&db).await;
    let app = assent_tests::TestApp::create(&db, "Shop").await;
    let mut rp = assent_tests::rp_client(&server, &app.api_key).await;
    rp.create_otp_authentication(assent_proto::v1::CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    })
    .await
    .expect("create");
    let scrape = |path: &'static str| async move {
        assent_tests::metrics::http_get(port, path)
            .await
            .expect("the metrics endpoint answers")
    };
    let metrics = scrape("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("assent_transactions_created_total{kind=\"otp\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE assent_device_streams gauge"));
    assert!(scrape("/other").await.starts_with("HTTP/1.1 404"));

    // Three full logins, followed by a subscriber: the histograms count them.
    let phone = assent_tests::TestDevice::enroll(&server, &app, "alice").await;
    let mut events = rp
        .subscribe(assent_proto::v1::SubscribeRequest {
            from_head: true,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    for _ in 0..3 {
        let created = rp
            .create_otp_authentication(assent_proto::v1::CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        let mut stream = phone.connect(&server).await.expect("connect");
        let request = stream.scan(&created.otp).await;
        stream
            .decide(phone.decision(&request, assent_proto::signing::SignedVerdict::Accept, ""))
            .await;
    }
    // created, scanned, accepted for each: nine events reach the subscriber.
    for _ in 0..9 {
        assent_tests::within(10, "an event", events.message())
            .await
            .expect("stream")
            .expect("event");
    }
    let metrics = scrape("/metrics").await;
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line} missing: {metrics}"))
    };
    assert_eq!(
        value("assent_rpc_duration_seconds_count{rpc=\"CreateOtpAuthentication\"}"),
        4.0
    );
    assert_eq!(value("assent_flow_seconds_count{step=\"scanned\"}"), 3.0);
    assert_eq!(value("assent_flow_seconds_count{step=\"decided\"}"), 3.0);
    assert!(value("assent_flow_seconds_count{step=\"delivered\"}") >= 9.0);
    assert_eq!(
        value("assent_transactions_ended_total{state=\"accepted\"}"),
        3.0
    );
    assert!(metrics.contains("# TYPE assent_rpc_duration_seconds histogram"));
    assert!(value("assent_calls_in_progress") >= 0.0);
}

assent_tests::on_both_engines!(
    health_reports_both_services_serving,
    health_reports_not_serving_as_soon_as_draining_starts,
    reflection_lists_and_describes_the_assent_services,
    prometheus_metrics_count_what_happened,
);
