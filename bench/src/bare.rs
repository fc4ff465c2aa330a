//! The bare transport baseline for `idle --bare`: a tonic server with the
//! same HTTP/2 settings as `assent-server` whose `Connect` only says
//! Challenge, reads a Hello (unchecked), says Ready and holds the stream.
//! Its RSS per agent is what the transport alone costs; the difference to
//! `assent-server` is the server's own per-session state.
//!
//! Knobs for trying transport changes before proposing them for the real
//! server (environment of the bare server, e.g. `--server-env` of `idle`):
//! `ASSENT_BENCH_BARE_BOXED=1` queues boxed messages (8-byte channel slots
//! instead of 232-byte ones); `ASSENT_BENCH_BARE_STREAM_WINDOW` /
//! `ASSENT_BENCH_BARE_CONN_WINDOW` set the HTTP/2 receive windows in bytes;
//! `ASSENT_BENCH_BARE_CODEC_BUFFER=N` serves `Connect` with codec buffers
//! of N bytes instead of tonic's 8 KiB ([`crate::small_codec`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use assent_proto::v1::device_service_server::{DeviceService, DeviceServiceServer};
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    AgentMessage, Challenge, EnrollRequest, EnrollResponse, Ready, ServerMessage, agent_message,
};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::small_codec::SmallCodecService;

/// The same outbound queue depth as the real server's sessions.
const OUTBOUND_QUEUE: usize = 32;

/// A `DeviceService` that only holds streams.
struct BareDevices {
    sessions: TaskTracker,
    is_boxed: bool,
}

type Outbound = Result<ServerMessage, Status>;
type BoxedOutbound = Result<Box<ServerMessage>, Status>;

/// The session's queue: plain messages, or boxed ones with small slots.
enum Queue {
    Plain(mpsc::Sender<Outbound>),
    Boxed(mpsc::Sender<BoxedOutbound>),
}

impl Queue {
    async fn say(&self, body: Body) -> bool {
        let message = ServerMessage { body: Some(body) };
        match self {
            Self::Plain(sender) => sender.send(Ok(message)).await.is_ok(),
            Self::Boxed(sender) => sender.send(Ok(Box::new(message))).await.is_ok(),
        }
    }
}

#[tonic::async_trait]
impl DeviceService for BareDevices {
    async fn enroll(&self, _: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::unimplemented("the bare baseline enrolls nothing"))
    }

    type ConnectStream = futures::stream::BoxStream<'static, Outbound>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let inbound = request.into_inner();
        let stream = if self.is_boxed {
            let (sender, receiver) = mpsc::channel(OUTBOUND_QUEUE);
            self.sessions.spawn(hold(inbound, Queue::Boxed(sender)));
            ReceiverStream::new(receiver)
                .map(|item| item.map(|boxed| *boxed))
                .boxed()
        } else {
            let (sender, receiver) = mpsc::channel(OUTBOUND_QUEUE);
            self.sessions.spawn(hold(inbound, Queue::Plain(sender)));
            ReceiverStream::new(receiver).boxed()
        };
        Ok(Response::new(stream))
    }
}

async fn hold(mut inbound: Streaming<AgentMessage>, outbound: Queue) {
    let challenge = Body::Challenge(Challenge { nonce: vec![7; 32] });
    if !outbound.say(challenge).await {
        return;
    }
    let Ok(Some(AgentMessage {
        body: Some(agent_message::Body::Hello(hello)),
    })) = inbound.message().await
    else {
        return;
    };
    let ready = Body::Ready(Ready {
        device_id: hello.device_id,
        user_id: "bare".to_owned(),
        application_name: "bare".to_owned(),
    });
    if !outbound.say(ready).await {
        return;
    }
    // Held until the agent leaves; bounded by the agent's lifetime.
    while let Ok(Some(_)) = inbound.message().await {}
}

/// Serves the baseline on `listen` until SIGTERM or Ctrl-C.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DeviceServiceServer<BareDevices>>()
        .await;
    let sessions = TaskTracker::new();
    let knob = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    let bare = BareDevices {
        sessions: sessions.clone(),
        is_boxed: knob("ASSENT_BENCH_BARE_BOXED").is_some_and(|v| v == 1),
    };
    let codec_buffer = knob("ASSENT_BENCH_BARE_CODEC_BUFFER");
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(128)
        .http2_max_header_list_size(16 * 1024)
        .initial_stream_window_size(knob("ASSENT_BENCH_BARE_STREAM_WINDOW"))
        .initial_connection_window_size(knob("ASSENT_BENCH_BARE_CONN_WINDOW"))
        .add_service(health_service);
    let router = match codec_buffer {
        Some(size) => builder.add_service(SmallCodecService::new(bare, size as usize)),
        None => builder.add_service(
            DeviceServiceServer::new(bare)
                .max_decoding_message_size(64 * 1024)
                .max_encoding_message_size(64 * 1024),
        ),
    };
    router.serve_with_incoming_shutdown(incoming, stop).await?;
    sessions.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), sessions.wait()).await;
    Ok(())
}
