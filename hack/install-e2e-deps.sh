#!/usr/bin/env bash
# Installs the end-to-end test dependencies from Debian: the real CNCF Distribution registry
# (`docker-registry`, 2.8.x on bookworm, binary /usr/bin/docker-registry), `skopeo`, and `kubectl` for the
# deploy/ test: Debian's `kubernetes-client` (1.20, /usr/bin/kubectl) when no working kubectl is on PATH. Any
# kubectl that runs is kept, whoever packaged it (e.g. Google Cloud SDK's `kubectl` package, which owns
# /usr/bin/kubectl, so Debian's could not be installed beside it anyway); the one used is printed at the end.
#
# Idempotent and fast when all are present (no apt call at all). The package's postinst runs
# `invoke-rc.d docker-registry start`, which would start a registry on :5000 on ALL interfaces with
# /etc/docker/registry/config.yml; we forbid that with a temporary policy-rc.d (exit 101), disable the
# init script's boot links, stop a package daemon that may have been started by an earlier install, and
# finally verify with `ss -ltnp` that no docker-registry listens on a non-loopback address.
set -euo pipefail
# shellcheck source=lib/apt-without-services.sh
source "$(dirname "$0")/lib/apt-without-services.sh"

PKG_PIDFILE=/var/run/docker-registry.pid

log() { printf 'install-e2e-deps: %s\n' "$*" >&2; }


# A kubectl counts only if it runs.
have_kubectl() { command -v kubectl >/dev/null 2>&1 && kubectl version --client >/dev/null 2>&1; }
need=()
[[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
have_kubectl || need+=(kubernetes-client)

if ((${#need[@]} == 0)); then
  log "docker-registry, skopeo and kubectl already installed"
else
  apt_install_without_services install-e2e-deps "${need[@]}"
fi

# Never start at boot on a sysv-init machine (harmless where there is no init system at all).
if [[ -x /etc/init.d/docker-registry ]] && command -v update-rc.d >/dev/null 2>&1; then
  $SUDO update-rc.d docker-registry disable >/dev/null 2>&1 || true
fi

# A package daemon left over from an install without the policy: stop it through its own pidfile.
if [[ -s $PKG_PIDFILE ]] && kill -0 "$(cat "$PKG_PIDFILE")" 2>/dev/null; then
  log "stopping the package's docker-registry daemon (pid $(cat "$PKG_PIDFILE"))"
  $SUDO start-stop-daemon --stop --retry 5 --pidfile "$PKG_PIDFILE" --exec /usr/bin/docker-registry || true
  $SUDO rm -f "$PKG_PIDFILE"
fi

# Verify: no docker-registry may listen on anything but loopback (test registries bind 127.0.0.1 only).
if command -v ss >/dev/null 2>&1; then
  exposed=$($SUDO ss -Hltnp 2>/dev/null | awk '/"docker-registry"/ && $4 !~ /^(127\.|\[::1\]|::1)/' || true)
  if [[ -n $exposed ]]; then
    log "ERROR: a docker-registry listens on a non-loopback address:"
    printf '%s\n' "$exposed" >&2
    exit 1
  fi
else
  log "warning: ss not found (iproute2); cannot verify listeners"
fi

/usr/bin/docker-registry --version >&2
skopeo --version >&2
have_kubectl || { log "ERROR: kubectl does not run: $(command -v kubectl || echo 'not on PATH')"; exit 1; }
log "kubectl: $(command -v kubectl), $(kubectl version --client 2>&1 | head -n 1)"
