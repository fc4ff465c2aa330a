# syntax=docker/dockerfile:1
# Builds all three Assent binaries; the final stage holds only what runs.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when a manifest or the lock
# file changes (the crates' sources are stubbed for it).
COPY Cargo.toml Cargo.lock ./
COPY proto/Cargo.toml proto/
COPY server/Cargo.toml server/
COPY device-agent/Cargo.toml device-agent/
COPY cli/Cargo.toml cli/
COPY tests/Cargo.toml tests/
COPY bench/Cargo.toml bench/
RUN for crate in proto server device-agent cli tests bench; do \
      mkdir -p $crate/src && echo 'fn main() {}' > $crate/src/main.rs && touch $crate/src/lib.rs; \
    done \
 && cargo fetch --locked
# Then the sources; the registry and build cache persist between builds.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin assent-server --bin assent-agent --bin assent \
 && install -D -t /out target/release/assent-server target/release/assent-agent target/release/assent

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/assent --create-home assent \
 && install -d -m 0700 -o assent -g assent /var/lib/assent/agent
COPY --from=build /out/ /usr/local/bin/
USER assent
WORKDIR /var/lib/assent
# Containers are reached from outside their loopback: listen on every
# interface. Without TLS (ASSENT_TLS_CERT/KEY) the server refuses that unless
# started with --insecure-plaintext (only on a private network).
ENV ASSENT_LISTEN=0.0.0.0:50051 \
    ASSENT_DATA_DIR=/var/lib/assent
# The embedded SQLite file (when no ASSENT_DATABASE_URL is set) and the
# agent's key live here.
VOLUME ["/var/lib/assent"]
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["assent-server", "health"]
ENTRYPOINT ["assent-server"]
CMD ["serve"]
