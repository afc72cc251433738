#!/usr/bin/env bash
# Keep the chart of the last release as a fixture, for the e2e scenario
# deploy-helm-upgrade (helm install of this chart, then helm upgrade to
# deploy/helm/serverconfig-webhook). A clean clone's history may not reach
# that commit, so the files are committed under tests/deploy/previous-chart/;
# this script is how they were made:
#   tests/deploy/gen-previous-chart.sh [COMMIT]   (default: the one in previous-chart/SOURCE)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
dest=tests/deploy/previous-chart
commit="${1:-$(awk '/^commit /{print $2}' "$dest/SOURCE")}"
commit="$(git rev-parse --verify --quiet "$commit^{commit}")" || { echo "commit ${1:-} is not in this clone's history" >&2; exit 1; }
rm -rf "$dest/serverconfig-webhook"
mkdir -p "$dest"
git archive "$commit" "$CHART" | tar -x -C "$dest" --strip-components=2
{
  echo "# The chart at the last release, from: tests/deploy/gen-previous-chart.sh $commit"
  echo "commit $commit"
  echo "date $(git show -s --format=%cs "$commit")"
  echo "chart $(awk '/^version:/{print $2}' "$dest/serverconfig-webhook/Chart.yaml")"
} >"$dest/SOURCE"
echo "wrote $dest/serverconfig-webhook (chart of $commit)"
