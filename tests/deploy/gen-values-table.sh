#!/usr/bin/env bash
# Regenerate the values table of the chart README from values.schema.json
# (descriptions) and values.yaml (defaults); tests/deploy/check.sh fails when
# the committed table differs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
checker="$(checker_bin "$work")"
"$checker" values-table -schema "$CHART/values.schema.json" -values "$CHART/values.yaml" -readme "$CHART/README.md" -write
