#!/usr/bin/env bash
# The one install script: `make` and the Dockerfile both call it, so what CI exercises is what
# the image runs.
#
#   scripts/install.sh postgres         Debian's PostgreSQL server, only when none is found
#   scripts/install.sh test-tools       what the tests use besides Python, each only when
#                                       missing: systemd-analyze, unshare/nsenter/setpriv,
#                                       the shell script linter, pgbouncer, gdb and rsyslog
#   scripts/install.sh venv DIR [--dev] a virtual environment at DIR with compute_ctl installed
#                                       and its dependencies from requirements.lock; --dev:
#                                       editable, from requirements-dev.lock (`make lock`)
#   scripts/install.sh deps DIR [--dev] only the locked dependencies (the image's cached layer)
#   scripts/install.sh lowest DIR UV    DIR: a venv with the lowest versions pyproject.toml
#                                       allows, made with the uv at UV (`make lowest`)
#   scripts/install.sh system           a machine that runs computes (the container image, a
#                                       systemd host): the postgres user, PostgreSQL, a venv at
#                                       /opt/compute_ctl, /usr/local/bin/compute_ctl,
#                                       compute-ctl-probe and docker-entrypoint.sh, its man
#                                       page and shell completion (`manual`), and
#                                       /var/db/postgres for the data directory
#   scripts/install.sh manual VENV DIR  compute_ctl's man page and shell completion under DIR
#                                       (share/), made with VENV's tools (`system` does it)
#   scripts/install.sh system-packages  only the postgres user, PostgreSQL and python3-venv
#   scripts/install.sh image-tools      mmdebstrap and buildah, each only when missing
#   scripts/install.sh systemd          the unit and an environment file to edit (systemd hosts)
#   scripts/install.sh clean            drop apt's package lists and caches (image builds)
#
# PYTHON picks the interpreter for venvs: Debian's /usr/bin/python3 where there is one, so the
# venv is usable by the unprivileged user computes run as (an interpreter under /root is not).
# POSTGRES_UID/POSTGRES_GID fix the ids of a postgres user that `system` creates (999).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/compute_ctl
BINDIR=/usr/local/bin
DATA_PARENT=/var/db/postgres
if [[ -z "${PYTHON:-}" ]]; then
	if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
SUDO=()
if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi

say() { echo "install: $*" >&2; }

apt_updated=false
apt_install() {
	if ! $apt_updated; then
		"${SUDO[@]}" apt-get update -qq
		apt_updated=true
	fi
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

deb_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

have_postgres() {
	command -v postgres >/dev/null 2>&1 && return 0
	local candidate
	for candidate in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x "$candidate" ]] && return 0
	done
	return 1
}

step_postgres() {
	if have_postgres; then
		say "postgres: found"
		return
	fi
	say "postgres: not found, installing Debian's postgresql"
	# No "main" cluster: compute_ctl makes its own data directory, and a packaged cluster would
	# only hold port 5432.
	apt_install postgresql-common
	"${SUDO[@]}" sed -ri 's/^#?\s*create_main_cluster\s*=.*$/create_main_cluster = false/' \
		/etc/postgresql-common/createcluster.conf
	apt_install postgresql postgresql-contrib
}

step_test_tools() {
	local missing=()
	command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
	if ! command -v unshare >/dev/null 2>&1 || ! command -v nsenter >/dev/null 2>&1 ||
		! command -v setpriv >/dev/null 2>&1; then
		missing+=(util-linux)
	fi
	command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
	# Debian installs it in /usr/sbin, which an unprivileged user's PATH may lack.
	command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
	# gdb reads the core a crashed postmaster leaves; rsyslogd -N1 checks the configs we write.
	command -v gdb >/dev/null 2>&1 || missing+=(gdb)
	command -v rsyslogd >/dev/null 2>&1 || [[ -x /usr/sbin/rsyslogd ]] || missing+=(rsyslog)
	if ((${#missing[@]} == 0)); then
		say "test tools: found"
		return
	fi
	say "test tools: installing ${missing[*]}"
	apt_install "${missing[@]}"
}

step_venv() {
	local dir="${1:?usage: install.sh venv DIR [--dev]}" dev="${2:-}"
	if [[ -n "$dev" && "$dev" != --dev ]]; then
		say "venv: unknown option $dev"
		exit 2
	fi
	step_deps "$dir" "$dev"
	say "venv: compute_ctl into $dir"
	if [[ -n "$dev" ]]; then
		"$dir/bin/pip" install --quiet --no-deps -e "$ROOT"
	else
		"$dir/bin/pip" install --quiet --no-cache-dir --no-deps "$ROOT"
	fi
}

# The dependencies alone, exactly as locked (with their hashes): the image installs them in a
# layer of their own, before the source is copied in. PIP_CERT, when set, is the CA bundle pip
# trusts (a TLS proxy in front of the package index).
step_deps() {
	local dir="${1:?usage: install.sh deps DIR [--dev]}" dev="${2:-}" lock=requirements.lock
	if [[ -n "$dev" ]]; then lock=requirements-dev.lock; fi
	if [[ ! -x "$dir/bin/python" ]] && ! "$PYTHON" -m venv "$dir"; then
		say "venv: $PYTHON cannot make a venv, installing python3-venv"
		apt_install python3-venv
		"$PYTHON" -m venv "$dir"
	fi
	say "venv: the dependencies of $lock into $dir (pip is quiet for a minute the first time)"
	"$dir/bin/pip" install --quiet --no-cache-dir --require-hashes \
		-r "$ROOT/$lock"
}

# The unit tests against the lowest versions pyproject.toml allows for direct dependencies,
# so that a declared floor cannot be wrong unnoticed (uv comes from the development venv).
step_lowest() {
	local dir="${1:?usage: install.sh lowest DIR UV}" uv="${2:?usage: install.sh lowest DIR UV}"
	rm -rf "$dir"
	"$uv" venv --quiet --python "$PYTHON" "$dir"
	say "lowest: the lowest allowed versions into $dir"
	"$uv" pip install --quiet --python "$dir/bin/python" --resolution lowest-direct \
		"${ROOT}[test]"
}

# What a compute host needs besides compute_ctl: the postgres user, Debian's PostgreSQL and an
# interpreter that makes venvs. The image installs it in a layer of its own.
step_system_packages() {
	if ! getent group postgres >/dev/null; then
		"${SUDO[@]}" groupadd --system --gid "${POSTGRES_GID:-999}" postgres
	fi
	if ! getent passwd postgres >/dev/null; then
		"${SUDO[@]}" useradd --system --uid "${POSTGRES_UID:-999}" --gid postgres \
			--home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
	step_postgres
	if [[ ! -x /usr/bin/python3 ]] || ! deb_installed python3-venv; then
		apt_install python3 python3-venv
	fi
}

step_system() {
	step_system_packages
	"${SUDO[@]}" mkdir -p "$PREFIX"
	if [[ -n "${SUDO[*]}" ]]; then "${SUDO[@]}" chown "$(id -u)" "$PREFIX"; fi
	PYTHON=/usr/bin/python3 step_venv "$PREFIX"
	"${SUDO[@]}" ln -sf "$PREFIX/bin/compute_ctl" "$BINDIR/compute_ctl"
	"${SUDO[@]}" install -m 0755 "$ROOT/deploy/compute_ctl_probe.py" "$BINDIR/compute-ctl-probe"
	"${SUDO[@]}" install -m 0755 "$ROOT/deploy/docker-entrypoint.sh" "$BINDIR/docker-entrypoint.sh"
	"${SUDO[@]}" install -m 0755 "$ROOT/deploy/healthcheck.sh" "$BINDIR/compute-ctl-healthcheck"
	step_manual "$PREFIX" /usr/local/share
	# compute_ctl deletes and re-creates PGDATA, so the user needs to own the parent directory.
	"${SUDO[@]}" install -d -m 0750 -o postgres -g postgres "$DATA_PARENT"
	say "system: $BINDIR/compute_ctl ($("$PREFIX/bin/compute_ctl" --version))"
}

# What `make image` builds with, each only when missing: mmdebstrap makes the Debian base,
# buildah builds the Dockerfile and runs the image (no daemon, no registry needed).
step_image_tools() {
	local missing=()
	command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
	command -v buildah >/dev/null 2>&1 || missing+=(buildah)
	if ((${#missing[@]} == 0)); then
		say "image tools: found"
		return
	fi
	say "image tools: installing ${missing[*]}"
	apt_install "${missing[@]}"
}

# compute_ctl's man page and its bash and zsh completion, made from its argument parser by the
# tools of requirements.lock's `manual` extra, so they always match the flags.
step_manual() {
	local venv="${1:?usage: install.sh manual VENV SHAREDIR}" share="${2:?usage: install.sh manual VENV SHAREDIR}"
	local version
	version="$("$venv/bin/python" -c 'import compute_ctl; print(compute_ctl.__version__)')"
	"${SUDO[@]}" mkdir -p "$share/man/man1" "$share/bash-completion/completions" \
		"$share/zsh/site-functions"
	"$venv/bin/argparse-manpage" --module compute_ctl.cli --function build_parser \
		--prog compute_ctl --project-name compute_ctl --version "$version" \
		--description "the supervisor of a PostgreSQL compute node" \
		--output "$share/man/man1/compute_ctl.1"
	"$venv/bin/shtab" --shell=bash compute_ctl.cli.build_parser \
		>"$share/bash-completion/completions/compute_ctl"
	"$venv/bin/shtab" --shell=zsh compute_ctl.cli.build_parser \
		>"$share/zsh/site-functions/_compute_ctl"
	say "manual: $share/man/man1/compute_ctl.1 and the bash and zsh completion"
}

step_systemd() {
	"${SUDO[@]}" install -m 0644 "$ROOT/deploy/compute_ctl.service" /etc/systemd/system/
	"${SUDO[@]}" install -d -m 0755 /etc/compute_ctl
	if [[ ! -e /etc/compute_ctl/compute_ctl.env ]]; then
		"${SUDO[@]}" install -m 0644 "$ROOT/deploy/compute_ctl.env.example" \
			/etc/compute_ctl/compute_ctl.env
	fi
	if [[ -d /run/systemd/system ]]; then
		"${SUDO[@]}" systemctl daemon-reload
	fi
	say "systemd: edit /etc/compute_ctl/compute_ctl.env, then: systemctl start compute_ctl"
}

step_clean() {
	"${SUDO[@]}" apt-get clean
	"${SUDO[@]}" rm -rf /var/lib/apt/lists/* /root/.cache/pip
}

step="${1:-}"
shift || true
case "$step" in
postgres) step_postgres ;;
test-tools) step_test_tools ;;
venv) step_venv "$@" ;;
deps) step_deps "$@" ;;
lowest) step_lowest "$@" ;;
system-packages) step_system_packages ;;
system) step_system ;;
image-tools) step_image_tools ;;
manual) step_manual "$@" ;;
systemd) step_systemd ;;
clean) step_clean ;;
*)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
