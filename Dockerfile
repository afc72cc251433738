# syntax=docker/dockerfile:1
#
# serverconfig-webhook: a static musl binary on distroless/static (no shell,
# no libc, non-root). Build from the repository root:
#   docker build -t serverconfig-webhook:0.1.0 .
# tests/deploy/check.sh verifies the COPY sources below against the repo and
# .dockerignore (Docker cannot run on the development machines).

ARG RUST_VERSION=1.95

# ---- build: static x86_64-unknown-linux-musl release binary -----------------
FROM docker.io/library/rust:${RUST_VERSION}-alpine AS build
# musl-dev: crt files and headers for ring's C/asm parts (static link).
RUN apk add --no-cache musl-dev
WORKDIR /src
# Only what cargo needs to load the workspace and build the binary: the
# manifests and lockfile, every workspace member (xtask is one), and every
# explicitly declared target (benches/core.rs is a [[bench]]).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY xtask ./xtask
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin serverconfig-webhook \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/serverconfig-webhook /out/serverconfig-webhook

# ---- runtime: the binary only --------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="serverconfig-webhook" \
      org.opencontainers.image.description="Mutating admission webhook for Seldon Core v2 ServerConfigs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/serverconfig-webhook /usr/local/bin/serverconfig-webhook
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/serverconfig-webhook", "serve"]
