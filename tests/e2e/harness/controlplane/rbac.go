package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The webhook runs with the RBAC the deploy manifests ship, not as admin:
// the ClusterRoles/Roles and their bindings from deploy/kustomize are
// applied, and the webhook gets a client certificate whose user name is the
// bound ServiceAccount's (system:serviceaccount:<ns>:<name>, which is what
// RBAC matches a ServiceAccount subject against).

// DeployDir is the kustomize base, relative to the repository root.
const DeployDir = "deploy/kustomize"

// ApplyShippedRBAC applies every RBAC object under deploy/kustomize and
// returns the ServiceAccount its ClusterRoleBinding binds ("" when the
// manifests ship none: the webhook then runs as admin).
func (cp *ControlPlane) ApplyShippedRBAC(ctx context.Context, repo string) (ns, name string, err error) {
	files, _ := filepath.Glob(filepath.Join(repo, DeployDir, "*.yaml"))
	sort.Strings(files)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		docs, err := k8s.DecodeYAMLFile(f)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range docs {
			switch o.GetKind() {
			case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
				if o.GetAPIVersion() != "rbac.authorization.k8s.io/v1" {
					continue
				}
				objs = append(objs, o)
				if o.GetNamespace() != "" {
					if err := cp.EnsureNamespace(ctx, o.GetNamespace()); err != nil {
						return "", "", err
					}
				}
				if o.GetKind() == "ClusterRoleBinding" && ns == "" {
					subs, _, _ := unstructured.NestedSlice(o.Object, "subjects")
					for _, sub := range subs {
						sm, _ := sub.(map[string]any)
						if sm["kind"] == "ServiceAccount" {
							ns, _ = sm["namespace"].(string)
							name, _ = sm["name"].(string)
						}
					}
				}
			}
		}
	}
	if len(objs) == 0 {
		return "", "", nil
	}
	util.Step("webhook RBAC: applying %d RBAC objects from %s (ServiceAccount %s/%s)", len(objs), DeployDir, ns, name)
	return ns, name, cp.Apply(ctx, objs...)
}

// ServiceAccountKubeconfig writes a kubeconfig whose client certificate
// authenticates as the ServiceAccount ns/name.
func (cp *ControlPlane) ServiceAccountKubeconfig(ns, name string) (string, error) {
	pki := filepath.Join(cp.Dir, "pki")
	user := "system:serviceaccount:" + ns + ":" + name
	cert, err := cp.CA.Issue(pki, "sa-"+strings.ReplaceAll(ns+"-"+name, ":", "-"), user,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + ns}, nil)
	if err != nil {
		return "", err
	}
	path := filepath.Join(cp.Dir, "webhook.kubeconfig")
	if err := writeKubeconfig(path, cp.VIP.URL(), cp.CA.Path, cert, name); err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	return path, nil
}
