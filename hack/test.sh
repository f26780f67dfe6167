#!/usr/bin/env bash
# The full test suite on a fresh machine, and the README's test command (`npm run test:full`, or `bash hack/test.sh`):
# installs what the tests need that npm cannot (Debian's docker-registry and skopeo, a kube-apiserver 1.20 +
# etcd built from Debian's packages and cached outside the clone), then typechecks and runs every test.
# Later runs reuse everything and start testing within seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ -x node_modules/.bin/node ]] || npm ci --no-audit --no-fund
bash hack/install-e2e-deps.sh
KUBEBUILDER_ASSETS=$(bash hack/envtest-assets.sh | tail -n 1)
export KUBEBUILDER_ASSETS
npm test
