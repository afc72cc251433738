# Sourced by tests/deploy/*.sh: repo paths and the pinned helm / kustomize
# built from their Go modules (tests/deploy/tools/*/go.mod) into the peer
# cache, only when missing:
#   ${SERVERCONFIG_E2E_CACHE:-<repo>/.cache/peers}/helm-<ver>/helm
#   ${SERVERCONFIG_E2E_CACHE:-<repo>/.cache/peers}/kustomize-<ver>/kustomize
# shellcheck shell=bash
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DEPLOY_DIR/../.." && pwd)"
CACHE="${SERVERCONFIG_E2E_CACHE:-$REPO/.cache/peers}"
CHART="deploy/helm/serverconfig-webhook"
RELEASE="serverconfig-webhook"
RELEASE_NS="serverconfig-webhook-system"
# The kustomize base is `helm template` of the default values plus the
# Namespace object (Helm users create it with --create-namespace instead).
# The --set flags that turn every monitoring object of the chart on.
MONITORING_SET="--set monitoring.serviceMonitor.enabled=true --set monitoring.prometheusRule.enabled=true --set monitoring.dashboard.enabled=true"
GEN_CMD="helm template $RELEASE $CHART --namespace $RELEASE_NS --set namespace.create=true"

# module_version DIR MODULE: the version DIR/go.mod requires.
module_version() {
  awk -v m="$2" '($1 == m) || ($1 == "require" && $2 == m) { print ($1 == m ? $2 : $3); exit }' "$1/go.mod"
}

# go_tool NAME PACKAGE MODULE [LDFLAGS [TOOLDIR]]: print the path of the
# cached binary, building it first when missing, from the pinned module in
# tools/TOOLDIR (default tools/NAME). Build output goes to stderr.
go_tool() {
  local name="$1" pkg="$2" module="$3" ldflags="${4:-}"
  local moddir="$DEPLOY_DIR/tools/${5:-$name}"
  local ver; ver="$(module_version "$moddir" "$module")"
  [ -n "$ver" ] || { echo "no $module in $moddir/go.mod" >&2; return 1; }
  local out="$CACHE/$name-$ver/$name"
  if [ ! -x "$out" ]; then
    command -v go >/dev/null || { echo "building $name needs Go on PATH" >&2; return 1; }
    mkdir -p "$(dirname "$out")"
    local t0=$SECONDS
    echo "tools: building $name $ver from $module (first run only; a few minutes)" >&2
    (cd "$moddir" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
      go build -trimpath -ldflags "-s -w ${ldflags//@VER@/$ver}" -o "$out.tmp.$$" "$pkg") >&2 \
      || { rm -f "$out.tmp.$$"; return 1; }
    mv -f "$out.tmp.$$" "$out"
    echo "tools: $name $ver built in $((SECONDS - t0))s -> $out" >&2
  fi
  echo "$out"
}

helm_bin() {
  # Helm's Makefile stamps its version and the Kubernetes version that
  # `helm template` / `helm lint` assume (client-go v0.M.x -> 1.M).
  local cg minor
  cg="$(module_version "$DEPLOY_DIR/tools/helm" k8s.io/client-go)"
  minor="$(echo "$cg" | cut -d. -f2)"
  go_tool helm helm.sh/helm/v3/cmd/helm helm.sh/helm/v3 \
    "-X helm.sh/helm/v3/internal/version.version=@VER@ \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

kustomize_bin() {
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 sigs.k8s.io/kustomize/kustomize/v5
}

# krew's manifest validator (the one krew-index runs) and krew itself, from
# tools/krew (sigs.k8s.io/krew).
validate_krew_manifest_bin() {
  go_tool validate-krew-manifest sigs.k8s.io/krew/cmd/validate-krew-manifest sigs.k8s.io/krew "" krew
}

krew_bin() {
  go_tool krew sigs.k8s.io/krew/cmd/krew sigs.k8s.io/krew \
    "-X sigs.k8s.io/krew/internal/version.gitTag=@VER@" krew
}

# checker_bin DIR: build tests/deploy/checker into DIR (cached by go build).
checker_bin() {
  (cd "$DEPLOY_DIR/checker" && GOFLAGS="-buildvcs=false -mod=readonly" go build -o "$1/checker" .) >&2 && echo "$1/checker"
}

# render_kustomize HELM CHECKER OUT: regenerate the kustomize base into OUT.
render_kustomize() {
  local helm="$1" checker="$2" out="$3" tmp
  tmp="$(mktemp)"
  # shellcheck disable=SC2086
  (cd "$REPO" && "$helm" template $RELEASE $CHART --namespace $RELEASE_NS --set namespace.create=true) >"$tmp" \
    && "$checker" split -in "$tmp" -out "$out" -cmd "$GEN_CMD"
  local rc=$?
  rm -f "$tmp"
  return $rc
}
