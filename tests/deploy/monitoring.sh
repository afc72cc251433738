#!/usr/bin/env bash
# The chart's alert rules and dashboard against the real tools (called by
# `cargo xtask monitoring`, itself a step of `cargo xtask test`):
#   monitoring.sh PROMTOOL WEBHOOK_BIN
# renders the chart with the monitoring objects on, then tests/deploy/checker
# runs promtool check rules, promtool test rules
# (tests/deploy/monitoring/alerts.test.yaml), a scrape of `WEBHOOK_BIN serve`
# through promtool check metrics, and checks every metric the rules and the
# dashboard name against the scrape's HELP/TYPE lines.
# Prints PASS/FAIL lines and `monitoring: N passed, M failed`; exit 1 on any FAIL.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
[ $# -eq 2 ] || { echo "usage: $0 PROMTOOL WEBHOOK_BIN" >&2; exit 2; }
promtool="$1" webhook="$2"

passed=0 failed=0
t_start=$SECONDS
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
relay() {
  local line
  while IFS= read -r line; do
    case "$line" in
      PASS\ *) passed=$((passed + 1)); echo "$line" ;;
      FAIL\ *) failed=$((failed + 1)); echo "$line" ;;
      *) echo "    $line" ;;
    esac
  done
}
finish() {
  echo "monitoring: $passed passed, $failed failed ($((SECONDS - t_start))s)"
  [ "$failed" -eq 0 ]
}

relay <<<"PASS $("$promtool" --version 2>&1 | head -1) ($promtool)"
helm="$(helm_bin)"
checker="$(checker_bin "$work")"
# shellcheck disable=SC2086
if ! "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" $MONITORING_SET >"$work/monitoring.yaml" 2>"$work/helm.log"; then
  relay <<<"FAIL helm template with the monitoring objects on"; sed 's/^/    /' "$work/helm.log"; finish; exit 1
fi
relay <<<"PASS helm template with the monitoring objects on"
rc=0
out="$("$checker" monitoring -render "$work/monitoring.yaml" -webhook "$webhook" -promtool "$promtool" \
  -tests tests/deploy/monitoring/alerts.test.yaml -runbook docs/runbook.md \
  -dashboard "$CHART/dashboards/serverconfig-webhook.json" -work "$work" 2>&1)" || rc=$?
relay <<<"$out"
if [ "$rc" -gt 1 ]; then relay <<<"FAIL checker monitoring exited $rc"; fi
finish
