//! gRPC channels and clients: endpoints tuned for a load generator, and the
//! relying-party client that sends `authorization: Bearer <api key>`.

use std::time::Duration;

use anyhow::Context as _;
use assent_proto::v1::relying_party_service_client::RelyingPartyServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// An endpoint for `url` with Nagle off and a bounded connect time.
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad server URL {url:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10)))
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A relying-party client.
pub type RpClient = RelyingPartyServiceClient<InterceptedService<Channel, Bearer>>;

/// A relying-party client over `channel` for `api_key`.
pub fn rp_client(channel: Channel, api_key: &str) -> anyhow::Result<RpClient> {
    let value = format!("Bearer {api_key}")
        .parse()
        .context("the API key is not ASCII")?;
    Ok(RelyingPartyServiceClient::with_interceptor(
        channel,
        Bearer(value),
    ))
}

/// `count` connected channels to `url` (streams are spread over them).
pub async fn channels(url: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    // A comma-separated list of servers (replicas): channels go round-robin
    // over them, at least one each.
    let urls: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let count = count.max(urls.len()).max(1);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let url = urls.get(i % urls.len().max(1)).copied().unwrap_or(url);
        out.push(endpoint(url)?.connect().await.context("cannot connect")?);
    }
    Ok(out)
}

/// The first server of a comma-separated list.
pub fn first(url: &str) -> &str {
    url.split(',').next().unwrap_or(url).trim()
}
