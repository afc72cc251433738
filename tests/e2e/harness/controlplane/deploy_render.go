package controlplane

// Helpers of the deploy scenarios (scenario_deploy_*.go): the chart rendered
// with the cached helm binary, the generated kustomize base, and server-side
// apply (real or dry-run) of what they render.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"serverconfig-webhook/e2e/harness/k8s"
)

// Names of the shipped chart and of what it renders (the release, its
// namespace, the cert-manager objects).
const (
	chartDir       = "deploy/helm/serverconfig-webhook"
	ReleaseName    = "serverconfig-webhook"
	ReleaseNS      = "serverconfig-webhook-system"
	ScopedValues   = "tests/deploy/values-scoped.yaml"
	webhookSAUser  = "system:serviceaccount:serverconfig-webhook-system:serverconfig-webhook"
	ServingCert    = "serverconfig-webhook-serving"
	ServingSecret  = "serverconfig-webhook-tls"
	CACertName     = "serverconfig-webhook-ca"
	InjectCAAnnKey = "cert-manager.io/inject-ca-from"
)

// HelmTemplate runs `helm template serverconfig-webhook <chart> --namespace
// serverconfig-webhook-system [extra...]` in the repository and decodes the
// objects.
func HelmTemplate(cfg Config, extra ...string) ([]*unstructured.Unstructured, error) {
	if cfg.Helm == "" {
		return nil, fmt.Errorf("no helm binary given (--helm; cargo xtask e2e builds it with tests/deploy/lib.sh)")
	}
	args := append([]string{"template", ReleaseName, chartDir, "--namespace", ReleaseNS}, extra...)
	out, err := runTool(cfg.Repo, cfg.Helm, args...)
	if err != nil {
		return nil, err
	}
	return k8s.DecodeYAML(out)
}

// KustomizeObjects is `kustomize build deploy/kustomize` when a kustomize
// binary is given, else the files kustomization.yaml lists, in its order.
func KustomizeObjects(cfg Config) ([]*unstructured.Unstructured, string, error) {
	if cfg.Kustomize != "" {
		out, err := runTool(cfg.Repo, cfg.Kustomize, "build", DeployDir)
		if err != nil {
			return nil, "", err
		}
		objs, err := k8s.DecodeYAML(out)
		return objs, "kustomize build " + DeployDir, err
	}
	kz, err := k8s.DecodeYAMLFile(filepath.Join(cfg.Repo, DeployDir, "kustomization.yaml"))
	if err != nil || len(kz) != 1 {
		return nil, "", fmt.Errorf("%s/kustomization.yaml: %v", DeployDir, err)
	}
	res, _, _ := unstructured.NestedStringSlice(kz[0].Object, "resources")
	var all []*unstructured.Unstructured
	for _, f := range res {
		objs, err := k8s.DecodeYAMLFile(filepath.Join(cfg.Repo, DeployDir, f))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, objs...)
	}
	return all, "the files of " + DeployDir + "/kustomization.yaml", nil
}

func runTool(dir, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// ObjKey names an object for messages and maps.
func ObjKey(o *unstructured.Unstructured) string {
	k := o.GetKind() + " "
	if o.GetNamespace() != "" {
		k += o.GetNamespace() + "/"
	}
	return k + o.GetName()
}

// FindObj returns the first object of kind and name.
func FindObj(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// ApplyOpts server-side-applies one object as fieldManager (force), real or
// with dryRun=All, and returns what the API server answered.
func (cp *ControlPlane) ApplyOne(ctx context.Context, o *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Kube.Discovery()))
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	body, err := json.Marshal(o.Object)
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: k8s.FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ri := cp.Dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = ReleaseNS // helm template leaves the release namespace to the install
		}
		return ri.Namespace(ns).Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	}
	return ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
}

// WithoutClientConfig is a copy of a MutatingWebhookConfiguration without
// its webhooks' clientConfig (what the harness swaps).
func WithoutClientConfig(mwc *unstructured.Unstructured) map[string]any {
	c := mwc.DeepCopy()
	hooks, _, _ := unstructured.NestedSlice(c.Object, "webhooks")
	for i, h := range hooks {
		hm := h.(map[string]any)
		delete(hm, "clientConfig")
		hooks[i] = hm
	}
	_ = unstructured.SetNestedSlice(c.Object, hooks, "webhooks")
	return c.Object
}

// SameObject compares two decoded objects (JSON round trip, so 5 and 5.0
// or []any and []string do not differ).
func SameObject(a, b any) bool {
	var x, y any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &x)
	_ = json.Unmarshal(jb, &y)
	return reflect.DeepEqual(x, y)
}

// writeFileAtomic writes data to path through a temp file and a rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
