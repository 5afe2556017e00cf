# A compute node image: Debian's PostgreSQL and compute_ctl, with compute_ctl as PID 1.
#
#   docker build -t compute_ctl .
#   docker run --rm -p 3080:3080 -p 55432:55432 -v "$PWD/spec.json:/etc/compute_ctl/spec.json:ro" \
#       -e SPEC_PATH=/etc/compute_ctl/spec.json compute_ctl
#
# Installed by scripts/install.sh, the same script `make` runs (docs/deploying.md has more).
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

COPY . /usr/src/compute_ctl
RUN POSTGRES_UID="$POSTGRES_UID" POSTGRES_GID="$POSTGRES_GID" \
        bash /usr/src/compute_ctl/scripts/install.sh system \
    && bash /usr/src/compute_ctl/scripts/install.sh clean \
    && rm -rf /usr/src/compute_ctl

ENV PGDATA=/var/db/postgres/compute \
    CONNSTR=postgresql://cloud_admin@localhost:55432/postgres \
    EXTERNAL_HTTP_PORT=3080 \
    INTERNAL_HTTP_PORT=3081

EXPOSE 3080 3081 55432

USER postgres
WORKDIR /var/db/postgres

# Healthy means `running` (GET /status); the start period covers the basebackup.
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
    CMD ["compute-ctl-probe", "ready"]

# docker stop sends SIGTERM: compute_ctl stops Postgres with a fast shutdown and exits within
# 30 s (give `docker stop -t 40`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["docker-entrypoint.sh"]
