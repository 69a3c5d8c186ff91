# syntax=docker/dockerfile:1
# weir's image: the three binaries (weir, weir-edge, weir-producer) on
# debian:bookworm-slim. docker-compose.yml runs edges and producers from it.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The same build the tests run (scripts/test.sh: cargo build --workspace --bins);
# the image takes the product's binaries, not the load tool (weir-bench).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/weir target/release/weir-edge target/release/weir-producer /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 weir \
    && useradd --system --uid 10001 --gid weir --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin weir
COPY --from=build /out/weir /out/weir-edge /out/weir-producer /usr/local/bin/
USER 10001:10001
# Listen on every interface inside a container (the binaries' defaults are 127.0.0.1).
ENV WEIR_LISTEN=0.0.0.0:8080 \
    WEIR_METRICS_LISTEN=0.0.0.0:9091
EXPOSE 8080 9091
CMD ["weir-edge"]
