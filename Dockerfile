# syntax=docker/dockerfile:1
# faultline's container image: built with the official Rust image, run as a numeric
# non-root user on distroless (glibc and libgcc only: no shell, no package manager).
#   docker build -t ghcr.io/faultline/faultline:0.1.0 .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 9464:9464 ghcr.io/faultline/faultline:0.1.0

# Bookworm, so the binary's glibc matches distroless/cc-debian12's. Any stable Rust at or
# above Cargo.toml's rust-version builds it (Cargo.lock pins the dependencies); pin one with
# --build-arg RUST_VERSION=1.95 for a reproducible toolchain.
ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the binary is built from (build.rs compiles the .proto in pure Rust, no protoc).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin faultline \
    && install -D -m 0755 target/release/faultline /out/faultline \
    && mkdir -p /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/faultline /usr/local/bin/faultline
COPY docker/faultline.toml /etc/faultline/faultline.toml
# The SQLite state (docker/faultline.toml: state = /var/lib/faultline/state.db), writable by
# the nonroot user; mount a volume here to keep it across containers.
COPY --from=build --chown=65532:65532 /out/state /var/lib/faultline
VOLUME /var/lib/faultline
# Listeners on 0.0.0.0 (loopback is useless in a container); --config or flags override.
ENV FAULTLINE_CONFIG=/etc/faultline/faultline.toml
# 4317 OTLP/gRPC, 4318 OTLP/HTTP, 9464 /metrics, /api/v1, /healthz, /readyz.
EXPOSE 4317 4318 9464
# distroless's nonroot user, numeric so runAsNonRoot can check it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/faultline"]
CMD ["serve"]
