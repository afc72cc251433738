package scenarios

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
)

// deployScenarios run last (suite.go appends them): they install the
// rendered chart, cert-manager and its CRDs, and switch the webhook to
// cert-manager's certificate for a while; each puts the harness's own
// registration and certificate back when it ends.
var deployScenarios = []Scenario{
	{"deploy-render-apply", scenarioDeployRender},
	{"deploy-rbac-can-i", scenarioDeployRBAC},
	{"deploy-placeholder-guard", scenarioDeployGuard},
	{"deploy-cert-manager", scenarioDeployCertManager},
	{"deploy-cert-renewal", scenarioDeployRenewal},
	{"deploy-ca-rotation", scenarioDeployCARotation},
	{"deploy-helm-upgrade", scenarioDeployHelmUpgrade},
}

// scenarioDeployRender: what `helm template` (default values) and the
// kustomize base render is accepted by the real API server (server-side
// apply, dryRun=All, with cert-manager's CRDs installed so Issuer and
// Certificate are validated against their schemas too); the registration
// the harness registers is the rendered one; then everything but the
// MutatingWebhookConfiguration (the harness's registration has its name)
// and the Certificates (deploy-cert-manager applies them) is applied for
// real and read back.
func scenarioDeployRender(ctx context.Context, s *Suite) error {
	const sc = "deploy-render-apply"
	helmObjs, err := controlplane.HelmTemplate(s.Cfg)
	if !s.r.Check(checkName(sc, "helm-template"), err == nil && len(helmObjs) > 0, "%d objects from helm template (default values) %v", len(helmObjs), err) {
		return nil
	}
	kzObjs, kzSrc, err := controlplane.KustomizeObjects(s.Cfg)
	if !s.r.Check(checkName(sc, "kustomize"), err == nil && len(kzObjs) > 0, "%d objects from %s %v", len(kzObjs), kzSrc, err) {
		return nil
	}

	// the registration: rendered == generated file == what the harness registers
	helmMWC := controlplane.FindObj(helmObjs, "MutatingWebhookConfiguration", controlplane.ReleaseName)
	fileObjs, ferr := k8s.DecodeYAMLFile(s.Cfg.Repo + "/" + controlplane.RegistrationSource)
	var fileMWC *unstructured.Unstructured
	if ferr == nil && len(fileObjs) == 1 {
		fileMWC = fileObjs[0]
	}
	s.r.Check(checkName(sc, "registration-file-equals-helm"), helmMWC != nil && fileMWC != nil && controlplane.SameObject(helmMWC.Object, fileMWC.Object),
		"%s == the MutatingWebhookConfiguration of helm template (found in render: %v, file: %v)", controlplane.RegistrationSource, helmMWC != nil, ferr)
	if helmMWC != nil {
		same := controlplane.SameObject(controlplane.WithoutClientConfig(s.MWC), controlplane.WithoutClientConfig(helmMWC))
		hooks, _, _ := unstructured.NestedSlice(s.MWC.Object, "webhooks")
		urls := []string{}
		for _, h := range hooks {
			u, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "url")
			urls = append(urls, u)
		}
		s.r.Check(checkName(sc, "harness-registers-rendered"), same,
			"the harness's registration == helm's but for clientConfig (url %s); annotation %s=%q kept",
			strings.Join(urls, ","), controlplane.InjectCAAnnKey, s.MWC.GetAnnotations()[controlplane.InjectCAAnnKey])
	}

	// cert-manager's CRDs, so that Issuer/Certificate are validated too
	if err := s.installCertManagerCRDs(ctx); !s.r.Check(checkName(sc, "cert-manager-crds"), err == nil, "%v", err) {
		return nil
	}
	for _, src := range []struct {
		name string
		objs []*unstructured.Unstructured
	}{{"helm", helmObjs}, {"kustomize", kzObjs}} {
		var bad []string
		kinds := map[string]int{}
		for _, o := range src.objs {
			if o.GetKind() == "MutatingWebhookConfiguration" {
				// the harness's registration (url clientConfig, another field
				// manager) has this name: an apply would merge into it, so
				// the rendered one is dry-run as a new object
				o = o.DeepCopy()
				o.SetName(o.GetName() + "-render-dry-run")
			}
			if _, err := s.CP.ApplyOne(ctx, o, true); err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", controlplane.ObjKey(o), err))
			}
			kinds[o.GetKind()]++
		}
		s.r.Check(checkName(sc, src.name, "server-side-apply-dry-run"), len(bad) == 0,
			"%d/%d objects accepted (%s)%s", len(src.objs)-len(bad), len(src.objs), kindList(kinds), failures(bad))
	}

	// real apply of the rest, read back
	var bad []string
	n := 0
	for _, o := range helmObjs {
		switch o.GetKind() {
		case "MutatingWebhookConfiguration", "Certificate":
			continue
		}
		n++
		if _, err := s.CP.ApplyOne(ctx, o, false); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", controlplane.ObjKey(o), err))
			continue
		}
		if err := s.getBack(ctx, o); err != nil {
			bad = append(bad, fmt.Sprintf("%s read back: %v", controlplane.ObjKey(o), err))
		}
	}
	s.r.Check(checkName(sc, "helm", "server-side-apply"), len(bad) == 0,
		"%d objects applied for real and read back (all but the MutatingWebhookConfiguration and the Certificates)%s", n-len(bad), failures(bad))
	return nil
}

// getBack reads an applied object back through discovery.
func (s *Suite) getBack(ctx context.Context, o *unstructured.Unstructured) error {
	got, err := s.CP.ApplyOne(ctx, o, true) // a no-op apply answers the stored object
	if err != nil {
		return err
	}
	if got.GetUID() == "" || got.GetCreationTimestamp().Time.IsZero() {
		return fmt.Errorf("not stored (uid %q)", got.GetUID())
	}
	return nil
}

func kindList(m map[string]int) string {
	var out []string
	for k, n := range m {
		out = append(out, fmt.Sprintf("%s x%d", k, n))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func failures(bad []string) string {
	if len(bad) == 0 {
		return ""
	}
	return "; refused: " + strings.Join(bad, "; ")
}
