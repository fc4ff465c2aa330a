//! A `DeviceService` route for the bare baseline whose codec starts with
//! small buffers (tonic's default is 8 KiB for each of the request decoder
//! and the response encoder), to measure what a smaller codec buffer would
//! save per held stream before proposing it for `assent-server`.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use assent_proto::v1::device_service_server::DeviceService;
use assent_proto::v1::{AgentMessage, ServerMessage};
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder, prost::Message};

/// Largest message yielded before the encoder flushes (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A prost codec whose buffers start at `size` bytes and grow on demand.
struct SmallCodec<T, U> {
    size: usize,
    _types: PhantomData<(T, U)>,
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(self.size, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(self.size, YIELD_THRESHOLD))
    }
}

/// Serves only `Connect` of `D`, with [`SmallCodec`] buffers of `size` bytes.
pub struct SmallCodecService<D> {
    devices: Arc<D>,
    size: usize,
}

impl<D> SmallCodecService<D> {
    /// Wraps `devices`.
    pub fn new(devices: D, size: usize) -> Self {
        Self {
            devices: Arc::new(devices),
            size,
        }
    }
}

impl<D> Clone for SmallCodecService<D> {
    fn clone(&self) -> Self {
        Self {
            devices: Arc::clone(&self.devices),
            size: self.size,
        }
    }
}

impl<D> NamedService for SmallCodecService<D> {
    const NAME: &'static str = "assent.v1.DeviceService";
}

/// The `Connect` method as tonic's streaming service.
struct Connect<D>(Arc<D>);

impl<D: DeviceService> StreamingService<AgentMessage> for Connect<D> {
    type Response = ServerMessage;
    type ResponseStream = D::ConnectStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<AgentMessage>>) -> Self::Future {
        let devices = Arc::clone(&self.0);
        Box::pin(async move { devices.connect(request).await })
    }
}

impl<D: DeviceService> Service<http::Request<tonic::body::Body>> for SmallCodecService<D> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let devices = Arc::clone(&self.devices);
        let size = self.size;
        Box::pin(async move {
            if request.uri().path() != "/assent.v1.DeviceService/Connect" {
                return Ok(Status::unimplemented("only Connect").into_http());
            }
            let codec = SmallCodec::<ServerMessage, AgentMessage> {
                size,
                _types: PhantomData,
            };
            let mut grpc =
                Grpc::new(codec).apply_max_message_size_config(Some(64 * 1024), Some(64 * 1024));
            Ok(grpc.streaming(Connect(devices), request).await)
        })
    }
}
