package controlplane

// The built helm against the control plane (deploy-helm-upgrade): install,
// upgrade and uninstall of a release through the admin kubeconfig, and the
// objects a release labels, listed kind by kind.

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"serverconfig-webhook/e2e/harness/k8s"
)

// PreviousChartDir is the chart of the last release, kept as a fixture
// (tests/deploy/gen-previous-chart.sh writes it).
const PreviousChartDir = "tests/deploy/previous-chart/serverconfig-webhook"

// ChartDir is the chart in the repository (what an upgrade moves to).
const ChartDir = chartDir

// Helm runs the built helm in the repository against this control plane
// (admin kubeconfig) and returns its standard output.
func (cp *ControlPlane) Helm(cfg Config, args ...string) ([]byte, error) {
	if cfg.Helm == "" {
		return nil, fmt.Errorf("no helm binary given (--helm; cargo xtask e2e builds it with tests/deploy/lib.sh)")
	}
	return runTool(cfg.Repo, cfg.Helm, append(args, "--kubeconfig", cp.AdminKubeconfig)...)
}

// HelmManifest is `helm get manifest RELEASE --revision N`, decoded.
func (cp *ControlPlane) HelmManifest(cfg Config, release, ns string, revision int) ([]*unstructured.Unstructured, error) {
	out, err := cp.Helm(cfg, "get", "manifest", release, "--namespace", ns, "--revision", fmt.Sprint(revision))
	if err != nil {
		return nil, err
	}
	return k8s.DecodeYAML(out)
}

// ListLabelled lists, for each kind of gvks, the objects carrying selector
// in every namespace (cluster-scoped kinds: all of them).
func (cp *ControlPlane) ListLabelled(ctx context.Context, gvks []schema.GroupVersionKind, selector string) ([]*unstructured.Unstructured, error) {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Kube.Discovery()))
	var out []*unstructured.Unstructured
	for _, gvk := range gvks {
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", gvk, err)
		}
		l, err := cp.Dyn.Resource(m.Resource).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", m.Resource, err)
		}
		for i := range l.Items {
			o := l.Items[i]
			o.SetAPIVersion(gvk.GroupVersion().String())
			o.SetKind(gvk.Kind)
			out = append(out, &o)
		}
	}
	return out, nil
}
