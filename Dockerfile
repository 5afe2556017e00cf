# A compute node image: Debian's PostgreSQL and compute_ctl, with compute_ctl as PID 1.
#
#   make image          a Debian base made with mmdebstrap, then this file built with buildah
#                       (scripts/image.sh; no registry or daemon needed)
#   docker build -t compute_ctl .                  (where docker is at hand)
#   docker run --rm -p 3080:3080 -p 55432:55432 -v "$PWD/spec.json:/etc/compute_ctl/spec.json:ro" \
#       -e SPEC_PATH=/etc/compute_ctl/spec.json compute_ctl
#
# Installed by scripts/install.sh, the same script `make` runs (docs/deploying.md has more), in
# three layers: the system packages, the locked dependencies, then compute_ctl itself, so that a
# source change rebuilds only the last.
#
# Behind a TLS proxy, give pip the CA bundle that proxy's certificates verify against as the
# build secret `pip-ca`; it is mounted for the RUN steps that need the package index only, and is
# in no layer:
#   buildah build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt .
#   docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt .
#
# Ports:
#   3080   compute_ctl's external HTTP API (status, configure, terminate, metrics)
#   3081   compute_ctl's internal HTTP API (Postgres' extension, local_proxy)
#   55432  Postgres; the spec must set `port` to it, as CONNSTR says
#
# Environment (read by deploy/docker-entrypoint.sh; unset or empty ones add no flag):
#   PGDATA               --pgdata
#   CONNSTR              --connstr
#   PGBIN                --pgbin
#   SPEC_PATH            --spec-path
#   CONFIG_PATH          --config
#   CONTROL_PLANE_URI    --control-plane-uri
#   COMPUTE_ID           --compute-id
#   EXTERNAL_HTTP_PORT   --external-http-port
#   INTERNAL_HTTP_PORT   --internal-http-port
#   REMOTE_EXT_BASE_URL  --remote-ext-base-url
#   COMPUTE_CTL_ARGS     any further flags, split on whitespace
# Arguments after the image name are appended, e.g. `-c /config/config.json -i compute-1` or
# `-p http://control-plane:9090 -i compute-1`.

FROM debian:bookworm-slim

# The image's postgres user has fixed ids, so that Kubernetes' runAsUser and volume ownership
# can name them.
ARG POSTGRES_UID=999
ARG POSTGRES_GID=999
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG BUILD_TAG=latest

LABEL org.opencontainers.image.title="compute_ctl" \
      org.opencontainers.image.description="A PostgreSQL compute node: Debian's PostgreSQL supervised by compute_ctl" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm-slim"

# 1. The postgres user, Debian's PostgreSQL and python3-venv: changes with install.sh only.
COPY scripts/install.sh /usr/src/compute_ctl/scripts/install.sh
RUN POSTGRES_UID="$POSTGRES_UID" POSTGRES_GID="$POSTGRES_GID" \
        bash /usr/src/compute_ctl/scripts/install.sh system-packages \
    && bash /usr/src/compute_ctl/scripts/install.sh clean

# 2. The dependencies, exactly as requirements.lock has them (hashes checked).
COPY requirements.lock /usr/src/compute_ctl/requirements.lock
RUN --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && PYTHON=/usr/bin/python3 bash /usr/src/compute_ctl/scripts/install.sh deps /opt/compute_ctl

# 3. compute_ctl itself (pip fetches the build backend: the index again).
COPY . /usr/src/compute_ctl
RUN --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && bash /usr/src/compute_ctl/scripts/install.sh system \
    && bash /usr/src/compute_ctl/scripts/install.sh clean \
    && rm -rf /usr/src/compute_ctl

ENV PGDATA=/var/db/postgres/compute \
    CONNSTR=postgresql://cloud_admin@localhost:55432/postgres \
    EXTERNAL_HTTP_PORT=3080 \
    INTERNAL_HTTP_PORT=3081 \
    BUILD_TAG=$BUILD_TAG

EXPOSE 3080 3081 55432

USER postgres
WORKDIR /var/db/postgres

# Healthy means `running` (GET /readyz, 200); bash alone asks, no Python is started. The start
# period covers the basebackup.
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
    CMD ["compute-ctl-healthcheck"]

# docker stop sends SIGTERM: compute_ctl stops Postgres with a fast shutdown and exits within
# 30 s (give `docker stop -t 40`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["docker-entrypoint.sh"]
