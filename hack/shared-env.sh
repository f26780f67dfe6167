# Sourced by .ci/run and hack/test.sh, never run: `use_shared DIR` points the tests at what the project's shared
# folder DIR provides. CI has it beside the clone (../shared); a plain clone does not, and then the tests that need
# these skip with one loud line each outside CI. The tests themselves never look outside the repository: they only
# read these variables.
#   REGISTRY_NOTIFIER_SHARED_API_MD  the shared contract; docs/api.md must keep its sections unchanged
#   SERVICEMONITOR_CRD               the prometheus-operator CRD the chart's server-side dry run installs
#   HELMTPL                          a built `helm template` stand-in (hack/helmtpl.sh), unless helm is on PATH
# A variable that is already set is kept. Fails (set -e) when DIR lacks a file or helmtpl does not build.
# shellcheck shell=bash

use_shared() {
  local shared
  shared=$(cd "$1" && pwd)
  local api=$shared/design/api.md crd=$shared/crds/monitoring.coreos.com_servicemonitors.yaml
  [[ -f $api ]] || { echo "shared-env: $api is missing" >&2; return 1; }
  [[ -f $crd ]] || { echo "shared-env: $crd is missing" >&2; return 1; }
  export REGISTRY_NOTIFIER_SHARED_API_MD=${REGISTRY_NOTIFIER_SHARED_API_MD:-$api}
  export SERVICEMONITOR_CRD=${SERVICEMONITOR_CRD:-$crd}
  if [[ -z ${HELMTPL:-} ]] && ! command -v helm >/dev/null 2>&1; then
    # Assigned apart from the export, so a failed build fails the call instead of exporting nothing.
    HELMTPL=$(bash "$(dirname "${BASH_SOURCE[0]}")/helmtpl.sh" "$shared/tools/helmtpl" | tail -n 1) || return 1
    export HELMTPL
  fi
  echo "shared-env: from $shared: REGISTRY_NOTIFIER_SHARED_API_MD=$REGISTRY_NOTIFIER_SHARED_API_MD SERVICEMONITOR_CRD=$SERVICEMONITOR_CRD HELMTPL=${HELMTPL:-(helm on PATH)}" >&2
}
