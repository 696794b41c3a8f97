# Builds the iggy-grpc gateway into a small runtime image running as non-root.
# No system protoc is needed: build.rs compiles the protos with protox.
FROM rust:1.95-slim-bookworm AS build
# make builds jemalloc, the gateway's allocator.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin iggy-grpc

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home iggy-grpc
COPY --from=build /src/target/release/iggy-grpc /usr/local/bin/iggy-grpc
USER 10001
ENV IGGY_GRPC_LISTEN=0.0.0.0:50051 \
    IGGY_GRPC_METRICS_LISTEN=0.0.0.0:50052
# gRPC, then Prometheus metrics.
EXPOSE 50051 50052
HEALTHCHECK --interval=5s --timeout=6s --retries=12 \
    CMD ["/usr/local/bin/iggy-grpc", "--health-check"]
ENTRYPOINT ["/usr/local/bin/iggy-grpc"]
