package main

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
)

const (
	chartDir       = "deploy/helm/serverconfig-webhook"
	releaseName    = "serverconfig-webhook"
	releaseNS      = "serverconfig-webhook-system"
	scopedValues   = "tests/deploy/values-scoped.yaml"
	webhookSAUser  = "system:serviceaccount:serverconfig-webhook-system:serverconfig-webhook"
	servingCert    = "serverconfig-webhook-serving"
	servingSecret  = "serverconfig-webhook-tls"
	caCertName     = "serverconfig-webhook-ca"
	injectCAAnnKey = "cert-manager.io/inject-ca-from"
)

// HelmTemplate runs `helm template serverconfig-webhook <chart> --namespace
// serverconfig-webhook-system [extra...]` in the repository and decodes the
// objects.
func HelmTemplate(cfg Config, extra ...string) ([]*unstructured.Unstructured, error) {
	if cfg.Helm == "" {
		return nil, fmt.Errorf("no helm binary given (--helm; cargo xtask e2e builds it with tests/deploy/lib.sh)")
	}
	args := append([]string{"template", releaseName, chartDir, "--namespace", releaseNS}, extra...)
	out, err := runTool(cfg.Repo, cfg.Helm, args...)
	if err != nil {
		return nil, err
	}
	return DecodeYAML(out)
}

// KustomizeObjects is `kustomize build deploy/kustomize` when a kustomize
// binary is given, else the files kustomization.yaml lists, in its order.
func KustomizeObjects(cfg Config) ([]*unstructured.Unstructured, string, error) {
	if cfg.Kustomize != "" {
		out, err := runTool(cfg.Repo, cfg.Kustomize, "build", deployDir)
		if err != nil {
			return nil, "", err
		}
		objs, err := DecodeYAML(out)
		return objs, "kustomize build " + deployDir, err
	}
	kz, err := DecodeYAMLFile(filepath.Join(cfg.Repo, deployDir, "kustomization.yaml"))
	if err != nil || len(kz) != 1 {
		return nil, "", fmt.Errorf("%s/kustomization.yaml: %v", deployDir, err)
	}
	res, _, _ := unstructured.NestedStringSlice(kz[0].Object, "resources")
	var all []*unstructured.Unstructured
	for _, f := range res {
		objs, err := DecodeYAMLFile(filepath.Join(cfg.Repo, deployDir, f))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, objs...)
	}
	return all, "the files of " + deployDir + "/kustomization.yaml", nil
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

// objKey names an object for messages and maps.
func objKey(o *unstructured.Unstructured) string {
	k := o.GetKind() + " "
	if o.GetNamespace() != "" {
		k += o.GetNamespace() + "/"
	}
	return k + o.GetName()
}

// findObj returns the first object of kind and name.
func findObj(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
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
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ri := cp.Dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = releaseNS // helm template leaves the release namespace to the install
		}
		return ri.Namespace(ns).Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	}
	return ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
}

// withoutClientConfig is a copy of a MutatingWebhookConfiguration without
// its webhooks' clientConfig (what the harness swaps).
func withoutClientConfig(mwc *unstructured.Unstructured) map[string]any {
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

// sameObject compares two decoded objects (JSON round trip, so 5 and 5.0
// or []any and []string do not differ).
func sameObject(a, b any) bool {
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
