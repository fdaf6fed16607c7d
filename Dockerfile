# The rancher-agent image, for those with Docker (or Podman/Buildah):
#   docker build -t rancher-rs/rancher-agent:v$(cargo pkgid -p rancher | sed 's/.*[#@]//') .
# The tag must be the one the server's import manifest deploys: `rancher-agent --print-image-ref`
# (rancher-server's --agent-image default). Without a container engine, scripts/agent-image.sh builds
# the same image — the agent, glibc, CA roots, user 10001 — as an OCI layout.

FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin rancher-agent \
    && install -D -m 0755 target/release/rancher-agent /out/rancher-agent

# glibc, libgcc_s and the CA roots, nothing else.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/rancher-agent /usr/local/bin/rancher-agent
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/rancher-agent"]
