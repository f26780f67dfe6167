#!/usr/bin/env bash
# Provides the binaries for the envtest-style integration tests: kube-apiserver 1.20.2 and etcd.
#
#   export KUBEBUILDER_ASSETS=$(bash hack/envtest-assets.sh)
#
# The LAST line of stdout is the absolute path of the assets directory; all progress goes to stderr.
# Idempotent: when both binaries are cached and run, it does nothing else (well under a second).
# Otherwise (needs root, or sudo) it installs etcd from Debian's `etcd-server` package and builds
# kube-apiserver from Debian bookworm's `kubernetes` source package (about 5 minutes on 2 cores).
# Only the Debian mirrors are used. The cache lives outside the clone so fresh clones reuse it:
#   ${ENVTEST_CACHE:-/var/cache/registry-notifier/envtest}/1.20.2
set -euo pipefail

readonly K8S_VERSION=1.20.2
readonly CACHE_ROOT="${ENVTEST_CACHE:-/var/cache/registry-notifier/envtest}"
readonly ASSETS="${CACHE_ROOT}/${K8S_VERSION}"
readonly SOURCES=/etc/apt/sources.list.d/debian.sources
readonly REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
export DEBIAN_FRONTEND=noninteractive

log() { echo "envtest-assets: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A binary counts as present only if it exists and answers --version.
runs() { [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1; }
assets_ready() { runs "${ASSETS}/etcd" && runs "${ASSETS}/kube-apiserver"; }

# Fast path: nothing to do.
if assets_ready; then
  echo "${ASSETS}"
  exit 0
fi

SUDO=()
if [[ ${EUID} -ne 0 ]]; then
  command -v sudo >/dev/null || die "must run as root (or with sudo available) to install packages"
  SUDO=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

"${SUDO[@]}" mkdir -p "${ASSETS}"
[[ -w "${ASSETS}" ]] || "${SUDO[@]}" chown "$(id -u):$(id -g)" "${CACHE_ROOT}" "${ASSETS}"

# Serialise concurrent runs (two test shells starting at once); re-check after taking the lock.
exec 9>"${CACHE_ROOT}/.lock"
flock 9
if assets_ready; then
  echo "${ASSETS}"
  exit 0
fi

APT_UPDATED=0
apt_update_once() {
  if [[ ${APT_UPDATED} -eq 0 ]]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq >&2
    APT_UPDATED=1
  fi
}
apt_install() {
  apt_update_once
  log "apt-get install $*"
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Adds a `Types: deb-src` twin of every `Types: deb` stanza (same URIs/Suites/Components/Signed-By),
# unless some stanza already lists deb-src. Needed for `apt-get source`.
ensure_deb_src() {
  if [[ ! -f ${SOURCES} ]]; then
    log "warning: ${SOURCES} not found; relying on an existing deb-src entry"
    return
  fi
  if grep -Eq '^Types:.*\bdeb-src\b' "${SOURCES}"; then
    return
  fi
  log "adding deb-src entries to ${SOURCES}"
  # Paragraph mode: each deb822 stanza is one record; keep its fields, change only the Types line.
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       { n = split($0, line, "\n"); hit = 0
         for (i = 1; i <= n; i++) if (line[i] == "Types: deb") { line[i] = "Types: deb-src"; hit = 1 }
         if (hit) { out = line[1]; for (i = 2; i <= n; i++) out = out "\n" line[i]; print out } }' \
    "${SOURCES}" > "${TMP}/deb-src.sources"
  [[ -s "${TMP}/deb-src.sources" ]] || die "no 'Types: deb' stanza in ${SOURCES} to twin"
  { echo; cat "${TMP}/deb-src.sources"; } | "${SUDO[@]}" tee -a "${SOURCES}" >/dev/null
  APT_UPDATED=0 # the new source lists must be fetched
}

# etcd from Debian's etcd-server, without leaving the packaged service running.
install_etcd() {
  if ! runs /usr/bin/etcd; then
    local before after pid
    before=$(pgrep -u etcd -x etcd || true) # the service runs as user etcd; test etcds do not
    if [[ ! -e ${POLICY} ]]; then
      # Standard Debian hook: exit 101 tells invoke-rc.d (the postinst) not to start the service.
      printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "${POLICY}" >/dev/null
      "${SUDO[@]}" chmod 755 "${POLICY}"
      ADDED_POLICY=1
    fi
    apt_install etcd-server
    remove_policy
    # Keep it from starting at boot on sysvinit machines, and stop anything the install started.
    "${SUDO[@]}" update-rc.d etcd disable >/dev/null 2>&1 || true
    if [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now etcd.service >&2 || true
    fi
    after=$(pgrep -u etcd -x etcd || true)
    for pid in ${after}; do
      if ! grep -qx "${pid}" <<<"${before}"; then
        log "stopping etcd (pid ${pid}) started by the package install"
        "${SUDO[@]}" kill "${pid}" || true
      fi
    done
  fi
  cp -f /usr/bin/etcd "${ASSETS}/etcd.tmp"
  mv -f "${ASSETS}/etcd.tmp" "${ASSETS}/etcd"
  log "etcd: $("${ASSETS}/etcd" --version | head -n1)"
}

# kube-apiserver built from Debian's kubernetes source package (GOPATH mode, vendored deps).
build_kube_apiserver() {
  apt_install golang-go rsync jq make dpkg-dev xz-utils golang-github-modern-go-reflect2-dev
  [[ -d ${REFLECT2_SRC} ]] || die "${REFLECT2_SRC} missing after installing golang-github-modern-go-reflect2-dev"

  log "downloading the kubernetes source package"
  mkdir -p "${TMP}/src"
  (cd "${TMP}/src" && apt-get -o APT::Sandbox::User=root source --download-only kubernetes >&2)
  local dsc
  dsc=$(ls "${TMP}"/src/kubernetes_*.dsc)
  log "extracting $(basename "${dsc}") (dpkg-source applies Debian's patches)"
  dpkg-source -x "${dsc}" "${TMP}/kubernetes" >&2

  # The vendored reflect2 predates Go 1.18's runtime changes and crashes at start-up; Debian's 1.0.2 works.
  log "replacing vendored github.com/modern-go/reflect2 with Debian's 1.0.2"
  rm -rf "${TMP}/kubernetes/vendor/github.com/modern-go/reflect2"
  cp -r "${REFLECT2_SRC}" "${TMP}/kubernetes/vendor/github.com/modern-go/reflect2"

  local gopath="${TMP}/gopath"
  mkdir -p "${gopath}/src/k8s.io" "${TMP}/home"
  ln -s "${TMP}/kubernetes" "${gopath}/src/k8s.io/kubernetes"
  log "building cmd/kube-apiserver with $(go version) (about 5 minutes on 2 cores)"
  local started=${SECONDS}
  (cd "${gopath}/src/k8s.io/kubernetes" &&
    env HOME="${TMP}/home" GOPATH="${gopath}" GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
      make WHAT=cmd/kube-apiserver >&2)
  log "build took $((SECONDS - started)) s"

  local bin="${TMP}/kubernetes/_output/bin/kube-apiserver"
  [[ -x ${bin} ]] || bin="${TMP}/kubernetes/_output/local/bin/linux/$(go env GOARCH)/kube-apiserver"
  runs "${bin}" || die "the build produced no working kube-apiserver"
  cp -f "${bin}" "${ASSETS}/kube-apiserver.tmp"
  mv -f "${ASSETS}/kube-apiserver.tmp" "${ASSETS}/kube-apiserver"
  local version
  version=$("${ASSETS}/kube-apiserver" --version)
  log "kube-apiserver: ${version}"
  [[ ${version} == *"v${K8S_VERSION}"* ]] || log "warning: expected v${K8S_VERSION}, got '${version}'"
}

readonly POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
remove_policy() {
  if [[ ${ADDED_POLICY} -eq 1 ]]; then
    "${SUDO[@]}" rm -f "${POLICY}"
    ADDED_POLICY=0
  fi
}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/envtest-assets.XXXXXX")
trap 'remove_policy; rm -rf "${TMP}"' EXIT

# deb-src first, so that one `apt-get update` serves every install below.
runs "${ASSETS}/kube-apiserver" || ensure_deb_src
runs "${ASSETS}/etcd" || install_etcd
runs "${ASSETS}/kube-apiserver" || build_kube_apiserver
assets_ready || die "assets incomplete in ${ASSETS}"
log "assets ready in ${ASSETS}"
echo "${ASSETS}"
