#!/usr/bin/env bash
# Installs promtool for the alert tests (test/alerts/): Debian's `prometheus` package (2.42 on bookworm) ships
# /usr/bin/promtool. Idempotent and fast when promtool already runs (no apt call at all). Needs root or sudo
# otherwise.
#
# The package is a whole Prometheus server: its postinst runs `invoke-rc.d prometheus start` (on sysv-init) or
# `deb-systemd-invoke start prometheus.service`, which would start a server listening on :9090 on ALL interfaces
# with /etc/prometheus/prometheus.yml. We forbid that with a temporary policy-rc.d (exit 101) during the install,
# keep its recommended node exporter out (--no-install-recommends), disable the init script's boot links and the
# systemd unit, stop a daemon an earlier install without the policy may have started (through its pidfile), and
# finally check with `ss -ltnp` that no prometheus process listens anywhere. Only promtool is used, offline.
set -euo pipefail
# shellcheck source=lib/apt-without-services.sh
source "$(dirname "$0")/lib/apt-without-services.sh"

# Where the package's init script (/etc/init.d/prometheus) keeps the daemon's pid.
PKG_PIDFILE=/run/prometheus/prometheus.pid

log() { printf 'install-promtool: %s\n' "$*" >&2; }


# promtool counts only if it runs.
have_promtool() { command -v promtool >/dev/null 2>&1 && promtool --version >/dev/null 2>&1; }

if have_promtool; then
  log "promtool already installed"
else
  apt_install_without_services install-promtool prometheus
fi

# Never start at boot, on sysv-init or systemd (harmless where there is no init system at all).
if [[ -x /etc/init.d/prometheus ]] && command -v update-rc.d >/dev/null 2>&1; then
  $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
if command -v deb-systemd-helper >/dev/null 2>&1; then
  $SUDO deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
fi

# A package daemon left over from an install without the policy: stop it through its own pidfile.
if [[ -s $PKG_PIDFILE ]] && kill -0 "$(cat "$PKG_PIDFILE")" 2>/dev/null; then
  log "stopping the package's prometheus daemon (pid $(cat "$PKG_PIDFILE"))"
  $SUDO start-stop-daemon --stop --retry 5 --pidfile "$PKG_PIDFILE" --exec /usr/bin/prometheus || true
  $SUDO rm -f "$PKG_PIDFILE"
fi

# Verify: no prometheus server may listen (the tests need promtool only).
if command -v ss >/dev/null 2>&1; then
  listening=$($SUDO ss -Hltnp 2>/dev/null | awk '/"prometheus"/' || true)
  if [[ -n $listening ]]; then
    log "ERROR: a prometheus server is listening:"
    printf '%s\n' "$listening" >&2
    exit 1
  fi
else
  log "warning: ss not found (iproute2); cannot verify listeners"
fi

have_promtool || { log "ERROR: promtool does not run: $(command -v promtool || echo 'not on PATH')"; exit 1; }
log "promtool: $(command -v promtool), $(promtool --version 2>&1 | head -n 1)"
