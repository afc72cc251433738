package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The kyverno mode of `e2e bench` (issue 18): Kyverno's admission
// controller (controlplane/kyverno.go) with the ClusterPolicy of
// tests/e2e/fixtures/kyverno-serverconfig-policy.yaml, on the same control
// plane as the other modes. Only when the driver passes -kyverno (cargo
// xtask bench-e2e builds it); never part of `e2e run`.

const (
	modeKyverno    = "kyverno"
	kyvernoFixture = "tests/e2e/fixtures/kyverno-serverconfig-policy.yaml"
)

var gvrClusterPolicy = schema.GroupVersionResource{Group: "kyverno.io", Version: "v1", Resource: "clusterpolicies"}

// startKyverno installs Kyverno's CRDs, starts it and reads the policy.
func (b *bench) startKyverno(ctx context.Context) error {
	cfg := b.s.Cfg
	if cfg.KyvernoCRDs == "" {
		return fmt.Errorf("-kyverno given without -kyverno-crds")
	}
	if err := b.s.CP.InstallKyvernoCRDs(ctx, cfg.KyvernoCRDs); err != nil {
		return err
	}
	k, err := b.s.CP.StartKyverno(ctx, cfg.Kyverno)
	if err != nil {
		return err
	}
	b.kyverno = k
	objs, err := k8s.DecodeYAMLFile(filepath.Join(cfg.Repo, kyvernoFixture))
	if err != nil {
		return err
	}
	if len(objs) != 1 || objs[0].GetKind() != "ClusterPolicy" {
		return fmt.Errorf("%s: want one ClusterPolicy, found %d objects", kyvernoFixture, len(objs))
	}
	b.kyvernoPolicy = objs[0]
	return nil
}

func (b *bench) applyKyvernoPolicy(ctx context.Context) error {
	return b.s.CP.Apply(ctx, b.kyvernoPolicy.DeepCopy())
}

func (b *bench) dropKyvernoPolicy(ctx context.Context) error {
	if b.kyvernoPolicy == nil {
		return nil
	}
	err := b.s.CP.Dyn.Resource(gvrClusterPolicy).Delete(ctx, b.kyvernoPolicy.GetName(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// kyvernoHooksOff: outside the kyverno mode, none of Kyverno's resource
// webhooks may still be called for StatefulSets (it updates its
// configurations some time after the policy is deleted).
func (b *bench) kyvernoHooksOff(ctx context.Context) error {
	if b.kyverno == nil {
		return nil
	}
	for _, gvr := range []schema.GroupVersionResource{k8s.GVRMWC, gvrVWC} {
		l, err := b.s.CP.Dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, c := range l.Items {
			if !strings.HasPrefix(c.GetName(), "kyverno-resource-") {
				continue
			}
			if hooksMatch(&c, "statefulsets") {
				return fmt.Errorf("%s %s still has a webhook for statefulsets", gvr.Resource, c.GetName())
			}
		}
	}
	return nil
}

var gvrVWC = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}

// hooksMatch: some webhook of the configuration has a rule naming resource
// (or "*").
func hooksMatch(c *unstructured.Unstructured, resource string) bool {
	hooks, _, _ := unstructured.NestedSlice(c.Object, "webhooks")
	for _, h := range hooks {
		hm, _ := h.(map[string]any)
		rules, _, _ := unstructured.NestedSlice(hm, "rules")
		for _, r := range rules {
			rm, _ := r.(map[string]any)
			res, _, _ := unstructured.NestedStringSlice(rm, "resources")
			for _, x := range res {
				if x == resource || x == "*" || strings.HasPrefix(x, resource+"/") {
					return true
				}
			}
		}
	}
	return false
}

// procHWM is a process's peak resident set (VmHWM, bytes) from
// /proc/PID/status; 0 when unknown.
func procHWM(p *util.Proc) int64 {
	if p == nil || p.Cmd == nil || p.Cmd.Process == nil {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// kyvernoProc is nil without Kyverno.
func (b *bench) kyvernoProc() *util.Proc {
	if b.kyverno == nil {
		return nil
	}
	return b.kyverno.Proc
}
