# syntax=docker/dockerfile:1
# One image for every imcloud role: `imcloud comet|logic|job|api` (and `imcloud standalone`, the default).
#
#   docker build -t registry.example.com/imcloud:0.1.0 .
#   docker push registry.example.com/imcloud:0.1.0
#   docker run --rm --read-only -p 3102:3102 -p 3111:3111 registry.example.com/imcloud:0.1.0
#
# Stages: `web` builds the web client's assets when the tree has them (the binary embeds them); `build`
# compiles the release binary; the runtime stage is Debian slim with the binary, a non-root user and no
# writable path but /var/lib/imcloud (SQLite in standalone) and /tmp. scripts/chart-test assembles this
# stage's layout in a temp dir and starts every role from it (CI has no container engine).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM node:20-bookworm-slim AS web
WORKDIR /src
COPY . .
# The web client (web/, with the SDK in sdk/js) is optional in this tree: built when present.
RUN mkdir -p /web-dist \
 && if [ -f sdk/js/package.json ]; then npm ci --prefix sdk/js && npm run build --prefix sdk/js; fi \
 && if [ -f web/package.json ]; then \
      npm ci --prefix web && npm run build --prefix web && cp -r web/dist/. /web-dist/; \
    fi

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# protoc for etcd-client's build; a C toolchain, make, perl and zlib for the vendored librdkafka.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler build-essential cmake perl python3 zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
COPY --from=web /web-dist /tmp/web-dist
RUN if [ -n "$(ls -A /tmp/web-dist)" ]; then mkdir -p web/dist && cp -r /tmp/web-dist/. web/dist/; fi
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p imcloud \
 && install -D -m 0755 target/release/imcloud /out/usr/local/bin/imcloud

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 imcloud \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/imcloud --shell /usr/sbin/nologin imcloud \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/imcloud
COPY --from=build /out/usr/local/bin/imcloud /usr/local/bin/imcloud
WORKDIR /var/lib/imcloud
USER 10001:10001
# websocket, goim TCP, comet gRPC, logic gRPC, HTTP API, metrics (comet, logic, job)
EXPOSE 3102 3101 3109 3119 3111 9100
ENTRYPOINT ["/usr/local/bin/imcloud"]
CMD ["standalone"]
