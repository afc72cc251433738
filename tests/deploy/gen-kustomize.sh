#!/usr/bin/env bash
# Regenerates deploy/kustomize/ from the Helm chart (default values, release
# serverconfig-webhook in serverconfig-webhook-system, plus the Namespace):
# one file per kind and kustomization.yaml. Run after changing the chart;
# tests/deploy/check.sh fails when the committed folder drifts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
helm="$(helm_bin)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
checker="$(checker_bin "$work")"
render_kustomize "$helm" "$checker" "$REPO/deploy/kustomize"
echo "wrote $REPO/deploy/kustomize:"
ls "$REPO/deploy/kustomize"
