# Builds the iggy-grpc gateway into a small runtime image running as non-root.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
RUN cargo build --release --locked --bin iggy-grpc

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home iggy-grpc
COPY --from=build /src/target/release/iggy-grpc /usr/local/bin/iggy-grpc
USER iggy-grpc
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/iggy-grpc"]
