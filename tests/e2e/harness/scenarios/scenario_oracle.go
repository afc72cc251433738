package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioOracle: Seldon's own output through the real API server. For
// every case folder of what the unmodified Seldon operator code builds
// (tests/fixtures/oracle/, and ../shared/seldon-oracle/ where it exists:
// 2.9.1 StatefulSets, 2.10.2 Deployments), the stock controller's write of
// stock-workload.yaml -- sent as the controller's identity, through the
// shipped registration -- is stored equal, field for field, to Seldon's
// namespace-aware build expected.json submitted with dryRun=All in the same
// namespace without its owner reference (so that the webhook never sees
// it): both defaulted by the same API server. Compared as the data's
// README says: metadata.labels, metadata.annotations and spec, without
// the webhook's serverconfig-webhook/* keys and seldon.io/last-applied.
// Where the API server refuses Seldon's own build (a Deployment mounting a
// volume only a claim template provides), the controller's write must be
// refused for the same reason.
func scenarioOracle(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	cases, err := oracleCases(s.Cfg.Repo)
	if err != nil {
		return err
	}
	warnings := &standin.WarningRecorder{}
	manager, err := s.controllerIdentity(ctx, warnings)
	if err != nil {
		return err
	}
	counts := map[string][3]int{} // set -> equal, both refused, differ
	for _, c := range cases {
		outcome, detail := s.oracleCase(ctx, manager, warnings, c)
		n := counts[c.set]
		n[outcome]++
		counts[c.set] = n
		s.r.Check("oracle-"+c.name+"/"+c.set, outcome != oracleDiffer, "%s", detail)
	}
	var parts []string
	for _, set := range oracleSets {
		n := counts[set]
		parts = append(parts, fmt.Sprintf("%s: %d cases, %d stored equal, %d refused alike, %d differ", set, n[0]+n[1]+n[2], n[0], n[1], n[2]))
	}
	util.Step("FIGURE oracle: %s", strings.Join(parts, "; "))
	return nil
}

var oracleSets = []string{"v2.9.1", "v2.10.2-deployment"}

const (
	oracleEqual = iota
	oracleBothRefused
	oracleDiffer
)

type oracleCase struct {
	set, name, dir string
}

// oracleCases: every case folder of the project's copy and of the shared
// reference (the shared one wins where both have a case).
func oracleCases(repo string) ([]oracleCase, error) {
	byKey := map[string]oracleCase{}
	for _, root := range []string{filepath.Join(repo, "tests", "fixtures", "oracle"), filepath.Join(repo, "..", "shared", "seldon-oracle")} {
		for _, set := range oracleSets {
			entries, err := os.ReadDir(filepath.Join(root, set))
			if err != nil {
				continue
			}
			for _, e := range entries {
				dir := filepath.Join(root, set, e.Name())
				if _, err := os.Stat(filepath.Join(dir, "expected.json")); err != nil {
					continue
				}
				byKey[set+"/"+e.Name()] = oracleCase{set: set, name: e.Name(), dir: dir}
			}
		}
	}
	if len(byKey) == 0 {
		return nil, fmt.Errorf("no oracle case folders under tests/fixtures/oracle or ../shared/seldon-oracle")
	}
	var out []oracleCase
	for _, c := range byKey {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].set+out[i].name < out[j].set+out[j].name })
	return out, nil
}

func readObject(path string) (*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// oracleCase runs one case in a namespace of its own.
func (s *Suite) oracleCase(ctx context.Context, manager dynamic.Interface, warnings *standin.WarningRecorder, c oracleCase) (int, string) {
	return s.oracleCaseIn(ctx, manager, warnings, c, "oracle-")
}

// oracleCaseIn is oracleCase in namespace prefix + set + name.
func (s *Suite) oracleCaseIn(ctx context.Context, manager dynamic.Interface, warnings *standin.WarningRecorder, c oracleCase, prefix string) (int, string) {
	short := map[string]string{"v2.9.1": "sts", "v2.10.2-deployment": "dep"}[c.set]
	ns := prefix + short + "-" + c.name
	if len(ns) > 63 {
		ns = ns[:63]
	}
	ns = strings.TrimRight(ns, "-")
	fail := func(format string, a ...any) (int, string) { return oracleDiffer, fmt.Sprintf(format, a...) }
	objs := map[string]*unstructured.Unstructured{}
	for _, f := range []string{"server.yaml", "serverconfig.yaml", "stock-workload.yaml", "expected.json"} {
		o, err := readObject(filepath.Join(c.dir, f))
		if err != nil {
			return fail("reading %s: %v", f, err)
		}
		o.SetNamespace(ns)
		objs[f] = o
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return fail("namespace: %v", err)
	}
	defer func() {
		_ = s.CP.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}()
	server := objs["server.yaml"]
	server.SetUID("")
	// Created, not applied: fields the 2.9.1 CRDs do not declare (2.10's
	// deploymentStrategy, pod spec fields outside Seldon's type) are pruned
	// by the API server as they would be in a real cluster; the case files
	// hold explicit nulls, which the CRD schema refuses, so those go.
	for _, f := range []string{"serverconfig.yaml", "server.yaml"} {
		o := &unstructured.Unstructured{Object: withoutNulls(objs[f].Object).(map[string]any)}
		gvrOf := k8s.GVRServer
		if o.GetKind() == "ServerConfig" {
			gvrOf = k8s.GVRServerConfig
		}
		if _, err := s.CP.Dyn.Resource(gvrOf).Namespace(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			return fail("creating %s: %v", f, err)
		}
	}
	stored, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ns).Get(ctx, server.GetName(), metav1.GetOptions{})
	if err != nil {
		return fail("the Server: %v", err)
	}
	gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	if objs["stock-workload.yaml"].GetKind() == "Deployment" {
		gvr.Resource = "deployments"
	}
	prepare := func(o *unstructured.Unstructured) {
		refs := o.GetOwnerReferences()
		for i := range refs {
			if refs[i].Kind == "Server" {
				refs[i].UID = stored.GetUID()
			}
		}
		o.SetOwnerReferences(refs)
		_ = unstructured.SetNestedField(o.Object, ns, "spec", "template", "metadata", "namespace")
		unstructured.RemoveNestedField(o.Object, "status")
		o.SetCreationTimestamp(metav1.Time{})
	}
	expected, stock := objs["expected.json"], objs["stock-workload.yaml"]
	prepare(expected)
	prepare(stock)
	// Seldon's build goes to the API server alone: without the owner
	// reference the registration's matchConditions keep the webhook out,
	// so only the API server's defaulting touches it.
	expected.SetOwnerReferences(nil)
	want, werr := s.CP.Dyn.Resource(gvr).Namespace(ns).Create(ctx, expected, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	warnings.Reset()
	got, gerr := manager.Resource(gvr).Namespace(ns).Create(ctx, stock, metav1.CreateOptions{FieldManager: "manager"})
	said := warnings.All()
	switch {
	case werr != nil && gerr != nil:
		if refusal(werr) != refusal(gerr) {
			return fail("refused differently: Seldon's build %v; the controller's write %v", werr, gerr)
		}
		// a Deployment mounting what only claim templates provide: the
		// webhook says so as the API server refuses it
		if strings.Contains(refusal(werr), "volumeMounts") && !strings.Contains(said, "defines only as a volumeClaimTemplate") {
			return fail("both refused (%s), but the webhook gave no warning about the mount: %q", refusal(werr), said)
		}
		return oracleBothRefused, fmt.Sprintf("Seldon's own build and the controller's write are both refused alike: %s; the webhook warned: %s", refusal(werr), said)
	case werr != nil && gerr != nil:
		return fail("refused differently: Seldon's build %v; the controller's write %v", werr, gerr)
	case werr != nil:
		return fail("Seldon's own build refused (%v) but the controller's write stored", werr)
	case gerr != nil:
		return fail("the controller's write refused: %v", gerr)
	}
	var diffs []string
	for _, path := range [][]string{{"metadata", "labels"}, {"metadata", "annotations"}} {
		g, _, _ := unstructured.NestedStringMap(got.Object, path...)
		w, _, _ := unstructured.NestedStringMap(want.Object, path...)
		if !reflect.DeepEqual(withoutOwnKeys(g), withoutOwnKeys(w)) {
			diffs = append(diffs, fmt.Sprintf("%s: stored %v, Seldon %v", strings.Join(path, "."), withoutOwnKeys(g), withoutOwnKeys(w)))
		}
	}
	gs, ws := comparableSpec(got), comparableSpec(want)
	if !reflect.DeepEqual(gs, ws) {
		gb, _ := json.Marshal(gs)
		wb, _ := json.Marshal(ws)
		diffs = append(diffs, "spec: "+firstDifference(string(gb), string(wb)))
	}
	if len(diffs) > 0 {
		return fail("%s", strings.Join(diffs, "; "))
	}
	return oracleEqual, fmt.Sprintf("%s %s/%s stored equal to Seldon's build (labels, annotations, spec); images %s",
		got.GetKind(), ns, got.GetName(), k8s.FmtImages(unstructuredImages(got)))
}

// withoutNulls drops every null value (recursively).
func withoutNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			if e != nil {
				out[k] = withoutNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, 0, len(t))
		for _, e := range t {
			if e != nil {
				out = append(out, withoutNulls(e))
			}
		}
		return out
	default:
		return v
	}
}

// refusal is what an API error says, without the object's name.
func refusal(err error) string {
	if se, ok := err.(apierrors.APIStatus); ok {
		st := se.Status()
		var causes []string
		if st.Details != nil {
			for _, c := range st.Details.Causes {
				causes = append(causes, c.Field+": "+c.Message)
			}
		}
		sort.Strings(causes)
		return fmt.Sprintf("%d %s %s", st.Code, st.Reason, strings.Join(causes, "; "))
	}
	return err.Error()
}

// withoutOwnKeys drops the webhook's serverconfig-webhook/* keys and the
// controller's seldon.io/last-applied.
func withoutOwnKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, "serverconfig-webhook/") || k == "seldon.io/last-applied" {
			continue
		}
		out[k] = v
	}
	return out
}

// comparableSpec is spec with the template's labels and annotations
// without the webhook's own keys.
func comparableSpec(o *unstructured.Unstructured) map[string]any {
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	for _, f := range []string{"labels", "annotations"} {
		m, found, _ := unstructured.NestedStringMap(spec, "template", "metadata", f)
		if found {
			kept := map[string]any{}
			for k, v := range withoutOwnKeys(m) {
				kept[k] = v
			}
			_ = unstructured.SetNestedMap(spec, kept, "template", "metadata", f)
		}
	}
	return spec
}

func unstructuredImages(o *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok {
			out[fmt.Sprint(m["name"])] = fmt.Sprint(m["image"])
		}
	}
	return out
}

// firstDifference shows where two JSON texts part.
func firstDifference(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := i - 80
	if from < 0 {
		from = 0
	}
	clip := func(t string) string {
		end := i + 120
		if end > len(t) {
			end = len(t)
		}
		if from > len(t) {
			return ""
		}
		return t[from:end]
	}
	return fmt.Sprintf("stored ...%s... vs Seldon ...%s...", clip(a), clip(b))
}

// controllerIdentity is a client acting as the Seldon controller's
// ServiceAccount user, with the rights the stock controller has on
// workloads (a ClusterRole of the harness).
func (s *Suite) controllerIdentity(ctx context.Context, warnings rest.WarningHandler) (dynamic.Interface, error) {
	const user = "system:serviceaccount:" + k8s.ControllerNS + ":seldon-manager"
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "e2e-seldon-manager"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets", "deployments"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"mlops.seldon.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"services", "events"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
	}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-seldon-manager"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}}
	if _, err := s.CP.Kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if _, err := s.CP.Kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	_, d, err := s.userClients(user, warnings)
	if err != nil {
		return nil, err
	}
	// RBAC takes effect within moments
	err = util.Poll(15*time.Second, func() error {
		_, err := d.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}).Namespace(k8s.ControllerNS).List(ctx, metav1.ListOptions{})
		return err
	})
	return d, err
}

// OracleCase names one case of Seldon's reference output (for the Kyverno
// comparison of `e2e bench`, bench/bench_oracle_kyverno.go).
type OracleCase struct {
	Set, Name string
	c         oracleCase
}

// OracleCases lists the cases of one set ("v2.9.1", "v2.10.2-deployment").
func OracleCases(repo, set string) ([]OracleCase, error) {
	cases, err := oracleCases(repo)
	if err != nil {
		return nil, err
	}
	var out []OracleCase
	for _, c := range cases {
		if c.set == set {
			out = append(out, OracleCase{Set: c.set, Name: c.name, c: c})
		}
	}
	return out, nil
}

// Oracle outcomes of RunOracleCase.
const (
	OracleEqual       = oracleEqual
	OracleBothRefused = oracleBothRefused
	OracleDiffer      = oracleDiffer
)

// OracleRunner sends cases as the Seldon controller's identity through
// whatever admission is registered at the time (the webhook, a policy).
type OracleRunner struct {
	s        *Suite
	manager  dynamic.Interface
	warnings *standin.WarningRecorder
}

// NewOracleRunner makes the controller's identity once.
func (s *Suite) NewOracleRunner(ctx context.Context) (*OracleRunner, error) {
	warnings := &standin.WarningRecorder{}
	manager, err := s.controllerIdentity(ctx, warnings)
	if err != nil {
		return nil, err
	}
	return &OracleRunner{s: s, manager: manager, warnings: warnings}, nil
}

// Run is one case as scenarioOracle runs it, in namespace
// prefix-<set>-<case> (a namespace is never reused: without
// kube-controller-manager a deleted one stays Terminating): its outcome and
// what differs.
func (r *OracleRunner) Run(ctx context.Context, c OracleCase, prefix string) (int, string) {
	return r.s.oracleCaseIn(ctx, r.manager, r.warnings, c.c, prefix)
}
