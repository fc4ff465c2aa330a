//! Transport bounds without holes: a request whose body never comes frees
//! its connection within the request deadline (raw HTTP/2 client), and the
//! connection cap fits the process's open-file limit, so silent connections
//! cannot take the descriptors a normal client and the database need.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_proto::v1::CreateOtpAuthenticationRequest;
use assent_tests::{
    ChildGuard, TestApp, TestDb, TestServer, binary, is_closed, rp_client, rp_client_at,
    scratch_dir, within,
};
use bytes::Bytes;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_comes_frees_its_connection() {
    let db = TestDb::sqlite();
    let server = TestServer::start_with(&db, |config| config.request_timeout_ms = 500).await;
    let app = TestApp::create(&db, "Shop").await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/assent.v1.RelyingPartyService/GetTransaction",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", app.api_key))
        .body(())
        .unwrap();
    let (_response, mut body) = client.send_request(request, false).unwrap();
    // A gRPC frame header promising ten bytes that never come.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 10]), false)
        .unwrap();
    let started = Instant::now();
    within(5, "the server to close the stalled connection", connection)
        .await
        .unwrap()
        .ok();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    // Everyone else is served meanwhile and after.
    rp_client(&server, &app.api_key)
        .await
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .expect("a normal call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_fits_the_open_file_limit() {
    const LIMIT: u64 = 400;
    const SILENT: usize = 320;
    let dir = scratch_dir("fdcap");
    let port = assent_tests::ports::free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    // The server runs with a small open-file limit (util-linux prlimit).
    let _server = ChildGuard(
        Command::new("prlimit")
            .arg(format!("--nofile={LIMIT}:{LIMIT}"))
            .arg(binary("assent-server"))
            .arg("--data-dir")
            .arg(&*dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                "off",
            ])
            .env("ASSENT_HANDSHAKE_TIMEOUT_MS", "3000")
            .env("ASSENT_MAX_CONNECTIONS_PER_PEER", "4096")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prlimit (util-linux) and assent-server"),
    );
    let url = format!("http://127.0.0.1:{port}");
    // Serving once the start log says the cap (the port accepts TCP
    // earlier: the binary binds it before the serving steps run).
    let log = dir.join("server.log");
    within(15, "the server to say its connection cap", async {
        while !std::fs::read_to_string(&log).is_ok_and(|said| said.contains("connection cap")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let key = std::fs::read_to_string(dir.join("default-api-key")).unwrap();
    let mut rp = rp_client_at(&url, key.trim()).await;
    let said = std::fs::read_to_string(&log).unwrap();
    let cap = 400 - 128 - 16;
    assert!(said.contains(&format!("max_connections={cap}")), "{said}");

    // Silent connections beyond the cap are closed at once.
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let mut closed_at_once = 0;
    for stream in &mut silent {
        if is_closed(stream, Duration::from_millis(20)).await {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= SILENT - cap,
        "{closed_at_once} of {SILENT} closed at once (cap {cap})"
    );
    // The server still has descriptors for its database and for the client
    // connected before the flood.
    rp.create_otp_authentication(CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    })
    .await
    .expect("served during the flood");
    drop(silent);
}
