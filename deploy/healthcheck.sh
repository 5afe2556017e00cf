#!/usr/bin/env bash
# The image's HEALTHCHECK (installed as compute-ctl-healthcheck): healthy means GET /readyz
# answers 200, i.e. the compute is `running`. bash's /dev/tcp speaks the HTTP, so a check every
# few seconds costs no Python start. The port is EXTERNAL_HTTP_PORT (3080), as for the
# entrypoint.
set -euo pipefail

port="${EXTERNAL_HTTP_PORT:-3080}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
read -r -t 5 _ code _ <&3
[[ "$code" == 200 ]]
