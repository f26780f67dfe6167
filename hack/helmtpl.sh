#!/usr/bin/env bash
# Builds helmtpl, the `helm template` stand-in the chart tests use where Helm cannot be installed, from its source
# directory (main.go and build.sh; CI has it in the shared folder beside the clone) into a cache outside the clone:
#
#   export HELMTPL=$(bash hack/helmtpl.sh SOURCE_DIR)
#
# The LAST line of stdout is the binary's absolute path; progress goes to stderr. The binary is named after the hash
# of main.go and build.sh, so a changed source is rebuilt and an unchanged one is reused at once (no build, no apt).
# build.sh may apt-get install Go and two Go libraries (root). Cache: ${HELMTPL_CACHE:-/var/cache/registry-notifier/helmtpl},
# or ~/.cache/registry-notifier/helmtpl when that is not writable.
set -euo pipefail

log() { echo "helmtpl: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: bash hack/helmtpl.sh SOURCE_DIR"
src=$(cd "$1" && pwd) || die "no such directory: $1"
[[ -f $src/main.go && -f $src/build.sh ]] || die "$src has no main.go and build.sh"

cache=${HELMTPL_CACHE:-/var/cache/registry-notifier/helmtpl}
if ! mkdir -p "$cache" 2>/dev/null || [[ ! -w $cache ]]; then
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/registry-notifier/helmtpl
  mkdir -p "$cache"
fi
hash=$(cat "$src/main.go" "$src/build.sh" | sha256sum | cut -c1-16)
bin=$cache/helmtpl-$hash

# A binary counts only if it runs: with no chart it must fail with helmtpl's own message, not a loader error.
works() {
  [[ -x $1 ]] || return 1
  local rc=0
  "$1" -h >/dev/null 2>&1 || rc=$?
  [[ $rc -eq 0 || $rc -eq 2 ]] # Go's flag package: -h prints the usage and exits 0 or 2
}

if ! [[ -x $bin ]]; then
  # One build at a time (two test shells starting together); the loser finds the binary after the lock.
  exec 9>"$cache/.lock"
  flock 9
  if ! [[ -x $bin ]]; then
    log "building $bin from $src (build.sh may apt-get install Go first)"
    partial=$bin.$$.partial
    bash "$src/build.sh" "$partial" >&2 || { rm -f "$partial"; die "build.sh failed"; }
    mv -f "$partial" "$bin" # renamed into place: nobody ever runs a half-written binary
  fi
fi
works "$bin" || die "$bin does not run"
echo "$bin"
