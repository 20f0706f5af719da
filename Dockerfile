# Build and run heal7-proxy (used by docker-compose.yml).
FROM rust:1-bookworm AS build
# libclang: pg_query (the exact fallback parser) runs bindgen at build time.
RUN apt-get update \
  && apt-get install -y --no-install-recommends libclang-dev \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/heal7-proxy /usr/local/bin/heal7-proxy
COPY config /etc/heal7-proxy
EXPOSE 6432 9930
ENTRYPOINT ["heal7-proxy"]
CMD ["serve", "--config", "/etc/heal7-proxy/heal7-compose.yaml"]
