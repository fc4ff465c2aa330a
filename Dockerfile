# Builds all three Assent binaries; the final stage holds only what runs.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin assent-server --bin assent-agent --bin assent

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/assent --create-home assent \
 && install -d -m 0700 -o assent -g assent /var/lib/assent/agent
COPY --from=build /src/target/release/assent-server /src/target/release/assent-agent /src/target/release/assent /usr/local/bin/
USER assent
WORKDIR /var/lib/assent
EXPOSE 50051 9464
ENTRYPOINT ["assent-server"]
CMD ["serve"]
