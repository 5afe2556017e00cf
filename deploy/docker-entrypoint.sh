#!/usr/bin/env bash
# The container's entrypoint: turn environment variables into compute_ctl's flags, then exec
# compute_ctl, so that compute_ctl is PID 1 (it then reaps orphans and passes signals on).
#
# Variable             Flag                        Notes
# PGDATA               --pgdata                    wiped and re-created at every start
# CONNSTR              --connstr                   its port must be the spec's `port` setting
# PGBIN                --pgbin                     default: the newest /usr/lib/postgresql/*/bin/postgres
# SPEC_PATH            --spec-path                 a bare ComputeSpec file (the seed's -S)
# CONFIG_PATH          --config                    a ComputeConfig file, e.g. mounted from a volume
# CONTROL_PLANE_URI    --control-plane-uri         fetch the spec from a control plane
# COMPUTE_ID           --compute-id                needed with CONFIG_PATH and CONTROL_PLANE_URI
# EXTERNAL_HTTP_PORT   --external-http-port        default 3080
# INTERNAL_HTTP_PORT   --internal-http-port        default 3081
# REMOTE_EXT_BASE_URL  --remote-ext-base-url
# COMPUTE_CTL_ARGS     (any flags)                 split on whitespace, after the flags above
#
# Unset or empty variables add no flag. Arguments given to the container (`docker run IMAGE
# ARGS…`, a Kubernetes `args:`) come last, so they can add flags (`-p URL -i ID`) or override
# one set from the environment (the last -D wins). compute_ctl itself refuses conflicting
# sources (say SPEC_PATH and CONFIG_PATH together) with exit status 2. A first argument that is
# not a flag is run instead of compute_ctl (`docker run -it IMAGE bash`).
set -euo pipefail

if [[ $# -gt 0 && "$1" != -* ]]; then
	exec "$@"
fi

args=()
add() {
	# add FLAG VALUE: only when VALUE is not empty
	if [[ -n "$2" ]]; then
		args+=("$1" "$2")
	fi
}

pgbin="${PGBIN:-}"
if [[ -z "$pgbin" ]]; then
	for candidate in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x "$candidate" ]] || continue
		# the newest major version: compare the numbers in the version directory
		if [[ -z "$pgbin" ]] || ((${candidate//[^0-9]/} > ${pgbin//[^0-9]/})); then
			pgbin="$candidate"
		fi
	done
fi

add --pgdata "${PGDATA:-}"
add --connstr "${CONNSTR:-}"
add --pgbin "$pgbin"
add --spec-path "${SPEC_PATH:-}"
add --config "${CONFIG_PATH:-}"
add --control-plane-uri "${CONTROL_PLANE_URI:-}"
add --compute-id "${COMPUTE_ID:-}"
add --external-http-port "${EXTERNAL_HTTP_PORT:-}"
add --internal-http-port "${INTERNAL_HTTP_PORT:-}"
add --remote-ext-base-url "${REMOTE_EXT_BASE_URL:-}"
if [[ -n "${COMPUTE_CTL_ARGS:-}" ]]; then
	read -r -a extra <<<"$COMPUTE_CTL_ARGS"
	args+=("${extra[@]}")
fi

exec compute_ctl "${args[@]}" "$@"
