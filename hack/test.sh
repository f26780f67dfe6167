#!/usr/bin/env bash
# The full test suite on a fresh machine, and the README's test command (`npm run test:full`, or `bash hack/test.sh`):
# installs what the tests need that npm cannot (Debian's docker-registry, skopeo and, when no kubectl is on PATH,
# kubernetes-client; promtool from Debian's prometheus, its server kept from starting; a kube-apiserver 1.20 +
# etcd built from Debian's packages and cached outside the clone), then typechecks and runs every test. When the
# project's shared folder is beside the clone (../shared, as in CI), the chart tests get helmtpl (built once, cached
# outside the clone), the ServiceMonitor CRD and the shared contract from it (hack/shared-env.sh); without it those
# tests skip with one loud line each (fail under CI). The tests themselves never read outside the repository.
# Later runs reuse everything and start testing within seconds. Ends with one plain line: `tests: N passed, N failed, N skipped`.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ -x node_modules/.bin/node ]] || npm ci --no-audit --no-fund
bash hack/install-e2e-deps.sh
bash hack/install-promtool.sh
bash hack/install-postgres.sh
# Assigned apart from the export, so a failed build stops the run (set -e) instead of exporting nothing.
KUBEBUILDER_ASSETS=$(bash hack/envtest-assets.sh | tail -n 1)
export KUBEBUILDER_ASSETS
if [[ -d ../shared ]]; then
  source hack/shared-env.sh
  use_shared ../shared
fi

npm run --silent typecheck
npm run --silent lint
report=$(mktemp -t vitest-report-XXXXXX.json)
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
' "$report" || status=1
rm -f "$report"
exit "$status"
