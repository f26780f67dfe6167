# Sourced by the hack/install-*.sh scripts: installs Debian packages without letting their maintainer scripts
# start a service (a registry on :5000, a PostgreSQL cluster, a Prometheus server on every interface).
# Defines SUDO (empty as root) and `apt_install_without_services NAME PACKAGE...`: a temporary policy-rc.d that
# answers 101 ("do not start") for the length of the install, the original one put back afterwards (also when
# a previous run was killed in between), one `apt-get update`, and an install that waits for another
# installer's dpkg lock. NAME keeps the scripts' backups apart when two of them run at once.

POLICY=/usr/sbin/policy-rc.d
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi

apt_install_without_services() {
  local name=$1
  shift
  local backup="${POLICY}.registry-notifier-${name}-bak"
  # A previous run killed between backup and restore left the original policy behind: put it back first.
  if [[ -e $backup ]]; then $SUDO mv -f "$backup" "$POLICY"; fi
  if [[ -e $POLICY ]]; then $SUDO cp -p "$POLICY" "$backup"; fi
  # shellcheck disable=SC2064 # the paths are fixed now, on purpose
  trap "if [[ -e '$backup' ]]; then $SUDO mv -f '$backup' '$POLICY'; else $SUDO rm -f '$POLICY'; fi" EXIT
  printf '#!/bin/sh\n# registry-notifier: no service may start during package installation\nexit 101\n' |
    $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 0755 "$POLICY"
  export DEBIAN_FRONTEND=noninteractive
  echo "${name}: apt-get update" >&2
  $SUDO apt-get update -qq
  echo "${name}: apt-get install $*" >&2
  $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >/dev/null
  # Restore now (the trap stays harmless: it finds the original already back).
  if [[ -e $backup ]]; then $SUDO mv -f "$backup" "$POLICY"; else $SUDO rm -f "$POLICY"; fi
  trap - EXIT
}
