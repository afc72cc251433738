#!/usr/bin/env bash
# The deploy checks, one entry point (called by `cargo xtask test`):
#   helm lint + helm template (default values; tests/deploy/values-scoped.yaml),
#   values that must be refused, kustomize build deploy/kustomize, the drift
#   check (deploy/kustomize == regenerated from the chart), the rendered
#   objects and RBAC (tests/deploy/checker), the monitoring objects' shape,
#   the Dockerfile, the krew manifest (krew's validate-krew-manifest, and
#   deploy/krew/fill-manifest.sh). (promtool and a scrape: tests/deploy/monitoring.sh.)
# helm, kustomize and krew's validator are built from their pinned Go modules
# on first use.
# Prints PASS/FAIL lines and `deploy: N passed, M failed`; exit 1 on any FAIL.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"

passed=0 failed=0
ok()  { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
# step NAME CMD...: PASS when CMD succeeds, else FAIL with its output.
step() {
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then ok "$name"; else bad "$name"; printf '%s\n' "$out" | sed 's/^/    /'; fi
}
# refused NAME PATTERN CMD...: PASS when CMD fails and says PATTERN.
refused() {
  local name="$1" pattern="$2"; shift 2
  local out
  if out="$("$@" 2>&1)"; then bad "$name (rendered, want an error)"
  elif grep -q -- "$pattern" <<<"$out"; then ok "$name"
  else bad "$name (error does not say '$pattern')"; printf '%s\n' "$out" | sed 's/^/    /'; fi
}
# checker_step ARGS...: run the checker, relaying and counting its lines.
checker_step() {
  local out rc=0 line
  out="$("$checker" "$@" 2>&1)" || rc=$?
  while IFS= read -r line; do
    case "$line" in
      PASS\ *) passed=$((passed + 1)); echo "$line" ;;
      FAIL\ *) failed=$((failed + 1)); echo "$line" ;;
      *) echo "    $line" ;;
    esac
  done <<<"$out"
  if [ "$rc" -gt 1 ]; then bad "checker $1 exited $rc"; fi
}
finish() {
  echo "deploy: $passed passed, $failed failed ($((SECONDS - t_start))s)"
  [ "$failed" -eq 0 ]
}
t_start=$SECONDS
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

# ---- tools -----------------------------------------------------------------
helm="" kustomize="" checker=""
if helm="$(helm_bin)"; then ok "helm $("$helm" version --template '{{.Version}}') ($helm)"; else bad "build helm"; fi
if kustomize="$(kustomize_bin)"; then ok "kustomize $("$kustomize" version) ($kustomize)"; else bad "build kustomize"; fi
if checker="$(checker_bin "$work")"; then ok "build tests/deploy/checker"; else bad "build tests/deploy/checker"; fi
if [ -z "$helm" ] || [ -z "$kustomize" ] || [ -z "$checker" ]; then finish; exit 1; fi

# ---- helm ------------------------------------------------------------------
scoped=tests/deploy/values-scoped.yaml
step "helm lint --strict (default values)" "$helm" lint --strict "$CHART"
step "helm lint --strict -f $scoped" "$helm" lint --strict "$CHART" -f "$scoped"
step "helm template (default values)" \
  sh -c '"$0" template "$1" "$2" --namespace "$3" >"$4"' "$helm" "$RELEASE" "$CHART" "$RELEASE_NS" "$work/default.yaml"
step "helm template --set namespace.create=true (the kustomize base's input)" \
  sh -c '"$0" template "$1" "$2" --namespace "$3" --set namespace.create=true >"$4"' "$helm" "$RELEASE" "$CHART" "$RELEASE_NS" "$work/generated.yaml"
step "helm template -f $scoped (watchNamespaces, certManager.enabled=false)" \
  sh -c '"$0" template "$1" "$2" --namespace "$3" -f "$4" >"$5"' "$helm" "$RELEASE" "$CHART" "$RELEASE_NS" "$scoped" "$work/scoped.yaml"
# The monitoring objects on (off by default), with values the checker can see
# in them: a timeout of 7 s, extra labels, the dashboard in another namespace.
step "helm template with monitoring.{serviceMonitor,prometheusRule,dashboard}.enabled" \
  sh -c '"$0" template "$1" "$2" --namespace "$3" $4 >"$5"' "$helm" "$RELEASE" "$CHART" "$RELEASE_NS" \
  "$MONITORING_SET --set webhook.timeoutSeconds=7 --set monitoring.serviceMonitor.labels.release=prom --set monitoring.prometheusRule.labels.release=prom --set monitoring.dashboard.namespace=grafana" \
  "$work/monitoring.yaml"
step "helm lint --strict with the monitoring objects on" sh -c '"$0" lint --strict "$1" $2' "$helm" "$CHART" "$MONITORING_SET"
refused "refuses a certManager.serving.renewBefore the alert cannot turn into seconds (the schema, then the template)" "renewBefore" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set monitoring.prometheusRule.enabled=true --set certManager.serving.renewBefore=30d
refused "refuses watchNamespaces containing the controller namespace" "never served" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set 'watchNamespaces={team-a,seldon-system}'
refused "refuses certManager.enabled=false without tls.existingSecret" "tls.existingSecret" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set certManager.enabled=false --set tls.caBundle=Zm9v
refused "refuses certManager.enabled=false without tls.caBundle" "tls.caBundle" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set certManager.enabled=false --set tls.existingSecret=s
refused "refuses an empty networkPolicy.webhookFromCIDRs" "webhookFromCIDRs" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set 'networkPolicy.webhookFromCIDRs=null'
refused "refuses an unknown onMissing" "onMissing" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set onMissing=maybe

# ---- values.schema.json: helm refuses a typo or a wrong type ----------------
# (helm install and upgrade validate the same way against a cluster: the
# e2e scenario deploy-helm-upgrade checks both refuse a typo)
printf 'replicaCont: 3\n' >"$work/typo-top.yaml"
printf 'sync:\n  leaseDuraton: 30s\n' >"$work/typo-nested.yaml"
refused "schema refuses a misspelt top-level key (-f: replicaCont)" "at '': additional properties 'replicaCont' not allowed" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" -f "$work/typo-top.yaml"
refused "schema refuses a misspelt nested key (-f: sync.leaseDuraton)" "at '/sync': additional properties 'leaseDuraton' not allowed" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" -f "$work/typo-nested.yaml"
refused "schema refuses a misspelt nested key (--set image.tagg)" "at '/image': additional properties 'tagg' not allowed" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set image.tagg=0.1.0
refused "schema refuses a wrong type (--set-string replicaCount=3)" "at '/replicaCount': got string, want integer" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set-string replicaCount=3
refused "schema refuses a wrong type (--set podLabels.team=7: labels are strings)" "at '/podLabels/team': got number, want string" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set podLabels.team=7
refused "schema refuses a duration the binary cannot parse (--set shutdownDelay=1h)" "at '/shutdownDelay': '1h' does not match pattern" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set shutdownDelay=1h
refused "schema refuses an unknown webhook.failurePolicy" "at '/webhook/failurePolicy': value must be one of" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set webhook.failurePolicy=Maybe
refused "schema refuses a misspelt monitoring key (--set monitoring.serviceMonitor.enable=true)" "at '/monitoring/serviceMonitor': additional properties 'enable' not allowed" \
  "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --set monitoring.serviceMonitor.enable=true
checker_step values-table -schema "$CHART/values.schema.json" -values "$CHART/values.yaml" -readme "$CHART/README.md"

# ---- Chart.yaml: kubeVersion = the tested minors; versions = the binary's ----
# The Kubernetes versions the README says the e2e suite ran on: each must be
# accepted, and the minor below the lowest and above the highest refused.
tested="$(grep '^| Kubernetes (kube-apiserver' README.md | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | sort -V | uniq)"
if [ -z "$tested" ]; then bad "README 'Versions tested' names no Kubernetes version"; fi
for v in $tested; do
  step "kubeVersion accepts $v (README: e2e suite ran on it)" \
    "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --kube-version "$v"
done
if [ -n "$tested" ]; then
  lo="$(head -1 <<<"$tested" | cut -d. -f2)" hi="$(tail -1 <<<"$tested" | cut -d. -f2)"
  for v in "1.$((lo - 1)).99" "1.$((hi + 1)).0"; do
    refused "kubeVersion refuses $v (outside the tested minors)" "incompatible with Kubernetes" \
      "$helm" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --kube-version "$v"
  done
fi
if version_out="$(cargo run --quiet --locked --bin serverconfig-webhook -- --version 2>"$work/cargo.log")"; then
  checker_step chart -chart "$CHART/Chart.yaml" -cargo Cargo.toml -version-output "$version_out"
else
  bad "cargo run --bin serverconfig-webhook -- --version"; sed 's/^/    /' "$work/cargo.log"
fi

# ---- the previous release's chart (fixture of the e2e deploy-helm-upgrade) ----
prev_commit="$(awk '/^commit /{print $2}' tests/deploy/previous-chart/SOURCE)"
if git cat-file -e "$prev_commit^{commit}" 2>/dev/null; then
  mkdir -p "$work/previous"
  git archive "$prev_commit" "$CHART" | tar -x -C "$work/previous" --strip-components=2
  if diff -r "$work/previous/serverconfig-webhook" tests/deploy/previous-chart/serverconfig-webhook >"$work/prev.diff"; then
    ok "tests/deploy/previous-chart is the chart at $prev_commit"
  else
    bad "tests/deploy/previous-chart differs from the chart at $prev_commit: run tests/deploy/gen-previous-chart.sh"; sed 's/^/    /' "$work/prev.diff"
  fi
else
  echo "note: commit $prev_commit is not in this clone's history; tests/deploy/previous-chart not compared with it"
fi
step "helm lint tests/deploy/previous-chart (the chart deploy-helm-upgrade installs first)" \
  "$helm" lint tests/deploy/previous-chart/serverconfig-webhook

# ---- kustomize base: generated, not hand-kept --------------------------------
if render_kustomize "$helm" "$checker" "$work/kustomize" >"$work/gen.log" 2>&1; then
  if diff -ru deploy/kustomize "$work/kustomize" >"$work/drift.diff"; then
    ok "deploy/kustomize is what tests/deploy/gen-kustomize.sh generates from the chart"
  else
    bad "deploy/kustomize drifted from the chart: run tests/deploy/gen-kustomize.sh"
    sed 's/^/    /' "$work/drift.diff"
  fi
else
  bad "regenerate the kustomize base"; sed 's/^/    /' "$work/gen.log"
fi
n_mwc="$(grep -c '^kind: MutatingWebhookConfiguration$' deploy/kustomize/mutatingwebhookconfiguration.yaml || true)"
n_docs="$(grep -c '^kind: ' deploy/kustomize/mutatingwebhookconfiguration.yaml || true)"
if [ "$n_mwc" = 1 ] && [ "$n_docs" = 1 ]; then
  ok "deploy/kustomize/mutatingwebhookconfiguration.yaml is one MutatingWebhookConfiguration (the e2e harness reads it)"
else
  bad "deploy/kustomize/mutatingwebhookconfiguration.yaml holds $n_docs objects, $n_mwc MutatingWebhookConfiguration"
fi
step "kustomize build deploy/kustomize" sh -c '"$0" build deploy/kustomize >"$1"' "$kustomize" "$work/kustomize.yaml"

# ---- rendered objects, RBAC, docs -------------------------------------------
checker_step objects -default "$work/generated.yaml" -scoped "$work/scoped.yaml" \
  -kustomize "$work/kustomize.yaml" -matrix tests/deploy/README.md -monitoring "$work/monitoring.yaml"

# ---- Dockerfile (Docker cannot build here: paths, stages, Cargo.lock) --------
checker_step dockerfile -repo .

# ---- krew manifest: krew's own validator (docs/ecosystem.md#kubectl-plugin) ---
krew_manifest=deploy/krew/serverconfig.yaml
if vkm="$(validate_krew_manifest_bin)"; then
  ok "build validate-krew-manifest (sigs.k8s.io/krew $(module_version "$DEPLOY_DIR/tools/krew" sigs.k8s.io/krew))"
  step "validate-krew-manifest $krew_manifest (structure, platforms used, no overlap)" \
    "$vkm" -manifest "$krew_manifest" -skip-install
  want_version="v$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)"
  got_version="$(awk '/^  version: /{print $2; exit}' "$krew_manifest")"
  if [ "$got_version" = "$want_version" ]; then ok "$krew_manifest spec.version is Cargo.toml's ($want_version)"
  else bad "$krew_manifest spec.version is $got_version, Cargo.toml says $want_version"; fi
  if grep -q 'sha256: "0\{64\}"' "$krew_manifest" && grep -q 'uri: https://RELEASE.invalid/' "$krew_manifest"; then
    ok "$krew_manifest carries the placeholders deploy/krew/fill-manifest.sh replaces"
  else bad "$krew_manifest: the uri/sha256 placeholders are gone (a release fills a copy, not this file)"; fi
  # a release's fill: the sha256 of the archive, the uri, the version
  mkdir -p "$work/krew/filled" "$work/krew/bad"
  printf 'stand-in archive\n' >"$work/krew/archive.tar.gz"
  if deploy/krew/fill-manifest.sh "$want_version" "https://example.test/a.tar.gz" "$work/krew/archive.tar.gz" \
      >"$work/krew/filled/serverconfig.yaml" 2>"$work/krew/fill.log"; then
    sum="$(sha256sum "$work/krew/archive.tar.gz" | cut -d' ' -f1)"
    if grep -q "sha256: \"$sum\"" "$work/krew/filled/serverconfig.yaml" && grep -q 'uri: https://example.test/a.tar.gz' "$work/krew/filled/serverconfig.yaml"; then
      ok "fill-manifest.sh writes the archive's sha256 and the uri"
    else bad "fill-manifest.sh: the filled manifest lacks the archive's sha256 $sum or the uri"; fi
    step "validate-krew-manifest on the filled manifest" "$vkm" -manifest "$work/krew/filled/serverconfig.yaml" -skip-install
  else
    bad "fill-manifest.sh"; sed 's/^/    /' "$work/krew/fill.log"
  fi
  refused "fill-manifest.sh refuses a version without the v" "must look like" \
    deploy/krew/fill-manifest.sh 0.1.0 https://example.test/a.tar.gz "$work/krew/archive.tar.gz"
  # the validator bites: a short sha256, a wrong kind, a name that is not the file's
  sed 's/^    sha256: .*/    sha256: "abc123"/' "$krew_manifest" >"$work/krew/bad/serverconfig.yaml"
  refused "validate-krew-manifest refuses a sha256 that is not 64 hex digits" "is not valid" \
    "$vkm" -manifest "$work/krew/bad/serverconfig.yaml" -skip-install
  sed 's/^kind: Plugin/kind: Plugins/' "$krew_manifest" >"$work/krew/bad/serverconfig.yaml"
  refused "validate-krew-manifest refuses a wrong kind" "only \"Plugin\" is supported" \
    "$vkm" -manifest "$work/krew/bad/serverconfig.yaml" -skip-install
  cp "$krew_manifest" "$work/krew/bad/other.yaml"
  refused "validate-krew-manifest refuses a metadata.name that is not the file name" "should be named" \
    "$vkm" -manifest "$work/krew/bad/other.yaml" -skip-install
else
  bad "build validate-krew-manifest"
fi

finish
