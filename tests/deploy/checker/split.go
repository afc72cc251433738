package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// kindOrder is the order of the files in kustomization.yaml (kinds not
// listed follow, alphabetically).
var kindOrder = []string{
	"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
	"RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
	"Issuer", "Certificate", "Service", "Deployment", "PodDisruptionBudget",
	"NetworkPolicy", "MutatingWebhookConfiguration",
}

// split writes one file per kind (documents in helm's order, comments kept)
// and a kustomization.yaml listing them.
func split(in, out, cmd string) error {
	if in == "" || out == "" {
		return fmt.Errorf("-in and -out are required")
	}
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	docs, err := splitDocs(b)
	if err != nil {
		return err
	}
	files := map[string][]string{}
	kinds := map[string]string{}
	for _, d := range docs {
		k := d.Obj.Kind()
		if k == "" {
			return fmt.Errorf("a document without kind:\n%s", d.Text)
		}
		f := strings.ToLower(k) + ".yaml"
		files[f] = append(files[f], d.Text)
		kinds[f] = k
	}
	if n := len(files["mutatingwebhookconfiguration.yaml"]); n != 1 {
		return fmt.Errorf("want exactly one MutatingWebhookConfiguration, the chart rendered %d", n)
	}
	rank := map[string]int{}
	for i, k := range kindOrder {
		rank[k] = i
	}
	names := sortedKeys(files)
	sort.SliceStable(names, func(i, j int) bool {
		ri, iok := rank[kinds[names[i]]]
		rj, jok := rank[kinds[names[j]]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		default:
			return names[i] < names[j]
		}
	})
	header := "# GENERATED from deploy/helm/serverconfig-webhook by tests/deploy/gen-kustomize.sh:\n#   " +
		cmd + "\n# Do not edit: change the chart (or its values) and re-run the script;\n" +
		"# tests/deploy/check.sh fails when this folder drifts from the chart.\n"
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range names {
		body := header + "---\n" + strings.Join(files[f], "---\n")
		if err := os.WriteFile(filepath.Join(out, f), []byte(body), 0o644); err != nil {
			return err
		}
	}
	var k strings.Builder
	k.WriteString(header)
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
	k.WriteString("# No `namespace:` here: the objects span the release, controller and\n")
	k.WriteString("# cluster scopes. For other names or namespaces install the Helm chart.\n")
	k.WriteString("resources:\n")
	for _, f := range names {
		k.WriteString("  - " + f + "\n")
	}
	return os.WriteFile(filepath.Join(out, "kustomization.yaml"), []byte(k.String()), 0o644)
}
