#!/usr/bin/env bash
# Installs the PostgreSQL server binaries the tests need (test/support/postgres.ts runs its own throwaway clusters
# from /usr/lib/postgresql/<version>/bin, on 127.0.0.1 and free ports): Debian's `postgresql`.
#
# Idempotent and fast when the binaries are present (no apt call at all). The package's postinst creates a cluster
# `<version>/main` on port 5432 and runs `invoke-rc.d postgresql start`; we forbid the start with a temporary
# policy-rc.d (exit 101), mark every cluster the install created as `manual` in its start.conf (never started at
# boot), stop such a cluster if something started it anyway, and finally verify that none of them is running (and
# warn when some other postgres listens on a non-loopback address).
set -euo pipefail
# shellcheck source=lib/apt-without-services.sh
source "$(dirname "$0")/lib/apt-without-services.sh"

MARK='# registry-notifier: hack/install-postgres.sh keeps this cluster from starting (the tests run their own)'

log() { printf 'install-postgres: %s\n' "$*" >&2; }


# The newest /usr/lib/postgresql/<version>/bin holding initdb, postgres and pg_ctl, as the harness looks for it.
server_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
    if [[ -x $dir/initdb && -x $dir/postgres && -x $dir/pg_ctl ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

# "version name" of every cluster postgresql-common knows (none when it is not installed).
clusters() {
  if command -v pg_lsclusters >/dev/null 2>&1; then pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}'; fi
}

if server_bin >/dev/null; then
  log "PostgreSQL server binaries already installed"
else
  before=$(clusters)
  apt_install_without_services install-postgres postgresql

  # The clusters this install created (the package's <version>/main): never started at boot or by the init script.
  while read -r version name; do
    [[ -n $version ]] || continue
    if grep -qxF "$version $name" <<<"$before"; then continue; fi
    conf=/etc/postgresql/$version/$name/start.conf
    if [[ -f $conf ]]; then
      log "cluster $version/$name: start.conf set to manual"
      printf '%s\nmanual\n' "$MARK" | $SUDO tee "$conf" >/dev/null
    fi
  done <<<"$(clusters)"
fi

server_bin >/dev/null || { log "ERROR: no initdb, postgres and pg_ctl in /usr/lib/postgresql/*/bin after installing"; exit 1; }

# A cluster we marked that is running anyway (an install before this script existed, a manual start): stop it.
while read -r version name; do
  [[ -n $version ]] || continue
  conf=/etc/postgresql/$version/$name/start.conf
  if [[ -f $conf ]] && grep -qF "$MARK" "$conf" && pg_lsclusters -h "$version" "$name" 2>/dev/null | grep -q online; then
    log "stopping the package's cluster $version/$name"
    $SUDO pg_ctlcluster "$version" "$name" stop -m fast || true
  fi
done <<<"$(clusters)"

# Verify: none of our marked clusters runs, and no postgres listens on anything but loopback.
while read -r version name; do
  [[ -n $version ]] || continue
  conf=/etc/postgresql/$version/$name/start.conf
  if [[ -f $conf ]] && grep -qF "$MARK" "$conf" && pg_lsclusters -h "$version" "$name" 2>/dev/null | grep -q online; then
    log "ERROR: the package's cluster $version/$name is still running"
    exit 1
  fi
done <<<"$(clusters)"
if command -v ss >/dev/null 2>&1; then
  exposed=$($SUDO ss -Hltnp 2>/dev/null | awk '/"postgres"/ && $4 !~ /^(127\.|\[::1\]|::1)/' || true)
  # Not ours to stop (the tests' servers listen on 127.0.0.1 only), but worth knowing.
  if [[ -n $exposed ]]; then
    log "warning: a postgres listens on a non-loopback address (not a cluster this script installed):"
    printf '%s\n' "$exposed" >&2
  fi
else
  log "warning: ss not found (iproute2); cannot verify listeners"
fi

"$(server_bin)/postgres" --version >&2
