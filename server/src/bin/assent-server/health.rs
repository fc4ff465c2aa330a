//! `assent-server health`.

use anyhow::Context as _;

/// `assent-server health`: one grpc.health.v1 check of the whole server.
pub async fn check(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url} is not a server URL (e.g. http://127.0.0.1:50051)"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.with_context(|| {
        format!("cannot reach the server at {url}: is it running and listening there?")
    })?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .with_context(|| format!("the server at {url} did not answer the health check"))?;
    match answer.into_inner().status() {
        tonic_health::pb::health_check_response::ServingStatus::Serving => {
            println!("SERVING");
            Ok(())
        }
        other => anyhow::bail!(
            "the server at {url} is {} (draining or starting)",
            other.as_str_name()
        ),
    }
}
