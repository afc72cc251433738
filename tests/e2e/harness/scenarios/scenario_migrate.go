package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// `serverconfig-webhook migrate` (the binary the harness built, with the
// admin kubeconfig) on the real control plane, with the stand-in controller
// running for the namespaces involved and the released controller
// Deployment (replicas 0) in seldon-system giving the watch flags:
//
//   - migrate-a-*: the seed's Migration Path A, a team namespace (Pattern 1
//     with the webhook, so the sync loop's placeholder is in seldon-system)
//     into seldon-system; then its rollback.
//   - migrate-b-*: Path B, seldon-system (Pattern 2) back into a team
//     namespace with the webhook installed; refusals first (unwatched
//     target, the clusterwide=false trap, a differing object); then its
//     rollback.

const (
	migA       = "mig-team-a"
	migB       = "mig-team-b"
	migPartOf  = "app.kubernetes.io/part-of"
	migRVLabel = "serverconfig-e2e/edited"
)

var (
	gvrModel      = schema.GroupVersionResource{Group: "mlops.seldon.io", Version: "v1alpha1", Resource: "models"}
	gvrExperiment = schema.GroupVersionResource{Group: "mlops.seldon.io", Version: "v1alpha1", Resource: "experiments"}
	gvrPipeline   = schema.GroupVersionResource{Group: "mlops.seldon.io", Version: "v1alpha1", Resource: "pipelines"}
)

// migState carries the rollback files from a move to its rollback scenario.
var migState = struct {
	dir            string
	fileA, fileB   string
	specsA, specsB map[string]any // kind/name -> spec before the move
	savedCtl       *unstructured.Unstructured
	savedCtlRead   bool
}{}

// migObj is one Seldon object of a migration set.
type migObj struct {
	gvr  schema.GroupVersionResource
	kind string
	name string
}

func (o migObj) key() string { return o.kind + "/" + o.name }

// migSet is the seed's set: ServerConfig, Server, Model, Experiment, Pipeline.
func migSet(prefix string) []migObj {
	return []migObj{
		{k8s.GVRServerConfig, "ServerConfig", prefix + "-config"},
		{k8s.GVRServer, "Server", prefix},
		{gvrModel, "Model", prefix + "-model"},
		{gvrExperiment, "Experiment", prefix + "-exp"},
		{gvrPipeline, "Pipeline", prefix + "-pipe"},
	}
}

// migObjects builds the set in ns; the ServerConfig is the released
// mlserver one with TeamImage(imagesNS) images. The Model carries a
// kubectl last-applied annotation (to see it rewritten).
func (s *Suite) migObjects(ns, prefix, imagesNS string) []*unstructured.Unstructured {
	set := migSet(prefix)
	sc := s.Fx.ServerConfig("mlserver", set[0].name, imagesNS, "team")
	sc.SetNamespace(ns)
	srv := k8s.NewServer(ns, set[1].name, set[0].name, 1, nil)
	model := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
		"metadata": map[string]any{"name": set[2].name, "namespace": ns},
		"spec":     map[string]any{"storageUri": "gs://seldon-models/mlserver/iris", "server": set[1].name, "requirements": []any{"sklearn"}},
	}}
	applied, _ := json.Marshal(map[string]any{"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
		"metadata": map[string]any{"name": set[2].name, "namespace": ns}, "spec": model.Object["spec"]})
	model.SetAnnotations(map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(applied)})
	exp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment",
		"metadata": map[string]any{"name": set[3].name, "namespace": ns},
		"spec":     map[string]any{"default": set[2].name, "candidates": []any{map[string]any{"name": set[2].name, "weight": int64(100)}}},
	}}
	pipe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Pipeline",
		"metadata": map[string]any{"name": set[4].name, "namespace": ns},
		"spec":     map[string]any{"steps": []any{map[string]any{"name": set[2].name}}},
	}}
	out := []*unstructured.Unstructured{sc, srv, model, exp, pipe}
	for _, o := range out {
		l := o.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l[migPartOf] = prefix
		o.SetLabels(l)
	}
	return out
}

func (s *Suite) migGet(ctx context.Context, o migObj, ns string) (*unstructured.Unstructured, error) {
	u, err := s.CP.Dyn.Resource(o.gvr).Namespace(ns).Get(ctx, o.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return u, err
}

// migPresence says which objects of the set exist in ns ("Kind/name" list).
func (s *Suite) migPresence(ctx context.Context, set []migObj, ns string) ([]string, error) {
	var out []string
	for _, o := range set {
		u, err := s.migGet(ctx, o, ns)
		if err != nil {
			return nil, err
		}
		if u != nil {
			out = append(out, o.key())
		}
	}
	return out, nil
}

func (s *Suite) migSpecs(ctx context.Context, set []migObj, ns string) (map[string]any, error) {
	out := map[string]any{}
	for _, o := range set {
		u, err := s.migGet(ctx, o, ns)
		if err != nil {
			return nil, err
		}
		if u == nil {
			return nil, fmt.Errorf("%s %s/%s missing", o.kind, ns, o.name)
		}
		out[o.key()] = u.Object["spec"]
	}
	return out, nil
}

// runMigrate runs `serverconfig-webhook migrate` with the admin kubeconfig.
func (s *Suite) runMigrate(ctx context.Context, args ...string) (int, string, string) {
	return runCmdWithin(ctx, 3*time.Minute, []string{"KUBECONFIG=" + s.CP.AdminKubeconfig}, s.WH.Bin, append([]string{"migrate"}, args...)...)
}

// migController applies the released controller Deployment with the given
// flags, remembering the one that was there first (migRestoreController).
func (s *Suite) migController(ctx context.Context, clusterwide, watch string) error {
	if !migState.savedCtlRead {
		u, err := s.CP.Dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).
			Namespace(k8s.ControllerNS).Get(ctx, "seldon-v2-controller-manager", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil {
			migState.savedCtl = u
		}
		migState.savedCtlRead = true
	}
	dep, err := s.controllerDeployment(clusterwide, watch)
	if err != nil {
		return err
	}
	return s.Apply(ctx, dep)
}

// migRestoreController puts back the controller Deployment that was there
// before migController (or deletes it); errors are printed.
func (s *Suite) migRestoreController(ctx context.Context) {
	if err := s.migRestoreControllerErr(ctx); err != nil {
		util.Step("migrate: restoring the controller Deployment: %v", err)
	}
	migState.savedCtl, migState.savedCtlRead = nil, false
}

func (s *Suite) migRestoreControllerErr(ctx context.Context) error {
	if !migState.savedCtlRead {
		return nil
	}
	gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	if migState.savedCtl == nil {
		err := s.CP.Dyn.Resource(gvr).Namespace(k8s.ControllerNS).Delete(ctx, "seldon-v2-controller-manager", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
	cur, err := s.CP.Dyn.Resource(gvr).Namespace(k8s.ControllerNS).Get(ctx, "seldon-v2-controller-manager", metav1.GetOptions{})
	if err != nil {
		return err
	}
	restored := migState.savedCtl.DeepCopy()
	restored.SetResourceVersion(cur.GetResourceVersion())
	_, err = s.CP.Dyn.Resource(gvr).Namespace(k8s.ControllerNS).Update(ctx, restored, metav1.UpdateOptions{})
	return err
}

func migDir() (string, error) {
	if migState.dir == "" {
		d, err := os.MkdirTemp("", "serverconfig-e2e-migrate-")
		if err != nil {
			return "", err
		}
		util.AtExit(func() { os.RemoveAll(d) })
		migState.dir = d
	}
	return migState.dir, nil
}

// migPodsImages checks the Server's Pods in ns: at least one, each with want.
func (s *Suite) migPodsImages(ctx context.Context, ns, server string, want map[string]string) (bool, string) {
	pods, err := s.CP.WaitPods(ctx, ns, server, 1, 30*time.Second)
	if err != nil {
		return false, err.Error()
	}
	var got []string
	ok := true
	for _, p := range pods {
		imgs := k8s.TemplateImages(p.Spec)
		got = append(got, p.Name+": "+k8s.FmtImages(imgs))
		if !k8s.SameImages(imgs, want) {
			ok = false
		}
	}
	return ok, strings.Join(got, "; ")
}

// migRollbackFile reads a rollback file's counts.
func migRollbackCounts(path string) (created, replaced, deleted int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	var f struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Created    []any  `json:"created"`
		Replaced   []any  `json:"replaced"`
		Deleted    []any  `json:"deleted"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return 0, 0, 0, err
	}
	if f.Kind != "MigrationRollback" {
		return 0, 0, 0, fmt.Errorf("kind %q", f.Kind)
	}
	return len(f.Created), len(f.Replaced), len(f.Deleted), nil
}

// scenarioMigrateA: Migration Path A, mig-team-a -> seldon-system.
func scenarioMigrateA(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, migA); err != nil {
		return err
	}
	defer s.migRestoreController(ctx)
	if err := s.migController(ctx, "true", ""); err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, migA, k8s.ControllerNS)
	if err != nil {
		return err
	}
	defer c.Stop()
	set := migSet("mig-a")
	if err := s.Apply(ctx, s.migObjects(migA, "mig-a", migA)...); err != nil {
		return err
	}
	teamImgs := s.teamImages(migA, "mlserver", set[0].name)
	// Pattern 1 with the webhook: the sync loop's placeholder in
	// seldon-system, the team's images in the team's StatefulSet
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, set[0].name, true, 30*time.Second); err != nil {
		return fmt.Errorf("setup: no placeholder: %w", err)
	}
	if _, imgs, err := s.waitImages(ctx, migA, set[1].name, teamImgs, 60*time.Second); err != nil {
		return fmt.Errorf("setup: %s %v", imgs, err)
	}
	before, err := s.migSpecs(ctx, set, migA)
	if err != nil {
		return err
	}
	migState.specsA = before
	srcSrv, err := s.migGet(ctx, set[1], migA)
	if err != nil {
		return err
	}
	dir, err := migDir()
	if err != nil {
		return err
	}

	// dry run: the plan and the diffs, nothing written
	code, out, errOut := s.runMigrate(ctx, "--from", migA, "--to", k8s.ControllerNS, "--dry-run", "--delete-source")
	_ = os.WriteFile(filepath.Join(s.CP.Dir, "migrate-a-dry-run.txt"), []byte(out+errOut), 0o644)
	present, err := s.migPresence(ctx, set[1:], k8s.ControllerNS)
	if err != nil {
		return err
	}
	sc, _ := s.getSC(ctx, k8s.ControllerNS, set[0].name)
	s.r.Check("migrate-a/dry-run", code == 0 && strings.Contains(out, "KIND") &&
		strings.Contains(out, "replaces the sync loop's placeholder") && strings.Contains(out, "create") &&
		strings.Contains(out, "-  namespace: "+migA) && strings.Contains(out, "+  namespace: "+k8s.ControllerNS) &&
		strings.Contains(out, "dry run: nothing written") && len(present) == 0 && sc != nil && sc.GetLabels()[syncManagedByLabel] == syncManagedByValue,
		"exit %d, in %s after: %v, placeholder kept: %v; stdout: %s stderr: %s", code, k8s.ControllerNS, present, sc != nil, util.OneLine(out), util.OneLine(errOut))

	// the move
	migState.fileA = filepath.Join(dir, "a.yaml")
	code, out, errOut = s.runMigrate(ctx, "--from", migA, "--to", k8s.ControllerNS, "--delete-source", "--rollback-file", migState.fileA, "--timeout", "90s")
	_ = os.WriteFile(filepath.Join(s.CP.Dir, "migrate-a.txt"), []byte(out+errOut), 0o644)
	_ = exec.Command("cp", migState.fileA, filepath.Join(s.CP.Dir, "migrate-a-rollback.yaml")).Run()
	if !s.r.Check("migrate-a/exit-0", code == 0, "stdout: %s stderr: %s", util.OneLine(out), util.OneLine(errOut)) {
		return nil
	}
	s.r.Check("migrate-a/progress-lines", strings.Contains(errOut, "[ ok ] Server "+k8s.ControllerNS+"/"+set[1].name+": StatefulSet") &&
		strings.Contains(errOut, "[ ok ] Server "+k8s.ControllerNS+"/"+set[1].name+": Pods") && strings.Contains(errOut, "verified:"),
		"stderr: %s", util.OneLine(errOut))
	after, err := s.migSpecs(ctx, set, k8s.ControllerNS)
	s.r.Check("migrate-a/moved-specs-unchanged", err == nil && reflect.DeepEqual(before, after), "err %v; before %v after %v", err, before, after)
	dstSrv, err := s.migGet(ctx, set[1], k8s.ControllerNS)
	if err != nil || dstSrv == nil {
		return fmt.Errorf("Server %s/%s: %v", k8s.ControllerNS, set[1].name, err)
	}
	s.r.Check("migrate-a/server-managed-stripped", dstSrv.GetUID() != srcSrv.GetUID() && len(dstSrv.GetOwnerReferences()) == 0 &&
		dstSrv.GetLabels()[migPartOf] == "mig-a", "uid %s (source %s), ownerReferences %v, labels %v", dstSrv.GetUID(), srcSrv.GetUID(), dstSrv.GetOwnerReferences(), dstSrv.GetLabels())
	dstSC, _ := s.getSC(ctx, k8s.ControllerNS, set[0].name)
	s.r.Check("migrate-a/placeholder-replaced", dstSC != nil && dstSC.GetLabels()[syncManagedByLabel] == "" && k8s.SameImages(k8s.ExpectedImages(dstSC), teamImgs),
		"seldon-system/%s: labels %v", set[0].name, dstSC.GetLabels())
	m, _ := s.migGet(ctx, set[2], k8s.ControllerNS)
	var applied map[string]any
	if m != nil {
		_ = json.Unmarshal([]byte(m.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"]), &applied)
	}
	appliedNS, _, _ := unstructured.NestedString(applied, "metadata", "namespace")
	s.r.Check("migrate-a/last-applied-rewritten", appliedNS == k8s.ControllerNS, "last-applied metadata.namespace %q", appliedNS)
	left, err := s.migPresence(ctx, set, migA)
	s.r.Check("migrate-a/sources-deleted", err == nil && len(left) == 0, "left in %s: %v %v", migA, left, err)
	// seed Test Case 1: the StatefulSet in seldon-system with the moved config's images, Pods labelled
	_, imgs, err := s.waitImages(ctx, k8s.ControllerNS, set[1].name, teamImgs, 10*time.Second)
	s.r.Check("migrate-a/test-case-1-statefulset", err == nil, "%s/%s images %s %v", k8s.ControllerNS, set[1].name, imgs, err)
	ok, detail := s.migPodsImages(ctx, k8s.ControllerNS, set[1].name, teamImgs)
	s.r.Check("migrate-a/test-case-1-pods", ok, "%s", detail)
	err = util.Poll(60*time.Second, func() error {
		if _, err := s.CP.GetSTS(ctx, migA, set[1].name); !apierrors.IsNotFound(err) {
			return fmt.Errorf("StatefulSet %s/%s still there (%v)", migA, set[1].name, err)
		}
		return nil
	})
	s.r.Check("migrate-a/source-statefulset-collected", err == nil, "garbage collector removed %s/%s: %v", migA, set[1].name, err)
	cr, rp, de, err := migRollbackCounts(migState.fileA)
	s.r.Check("migrate-a/rollback-file", err == nil && cr == 4 && rp == 1 && de == 5, "created %d, replaced %d (the placeholder), deleted %d: %v", cr, rp, de, err)
	return nil
}

// scenarioMigrateARollback: `migrate --rollback` of Path A, refused while a
// created object differs, then done.
func scenarioMigrateARollback(ctx context.Context, s *Suite) error {
	if migState.fileA == "" {
		return fmt.Errorf("needs migrate-a-to-controller-namespace to have run")
	}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, migA, k8s.ControllerNS)
	if err != nil {
		return err
	}
	defer c.Stop()
	set := migSet("mig-a")
	model := set[2]
	edit := func(value any) error {
		u, err := s.migGet(ctx, model, k8s.ControllerNS)
		if err != nil || u == nil {
			return fmt.Errorf("Model %s/%s: %v", k8s.ControllerNS, model.name, err)
		}
		l := u.GetLabels()
		if value == nil {
			delete(l, migRVLabel)
		} else {
			l[migRVLabel] = value.(string)
		}
		u.SetLabels(l)
		_, err = s.CP.Dyn.Resource(model.gvr).Namespace(k8s.ControllerNS).Update(ctx, u, metav1.UpdateOptions{})
		return err
	}
	if err := edit("yes"); err != nil {
		return err
	}
	code, out, errOut := s.runMigrate(ctx, "--rollback", migState.fileA, "--timeout", "90s")
	back, _ := s.migPresence(ctx, set, migA)
	s.r.Check("migrate-a-rollback/refused-when-changed", code == 3 && strings.Contains(errOut, "changed after migrate created it") && len(back) == 0,
		"exit %d, objects in %s: %v; stderr: %s", code, migA, back, util.OneLine(errOut))
	if err := edit(nil); err != nil {
		return err
	}
	code, out, errOut = s.runMigrate(ctx, "--rollback", migState.fileA, "--timeout", "90s")
	if !s.r.Check("migrate-a-rollback/exit-0", code == 0, "stdout: %s stderr: %s", util.OneLine(out), util.OneLine(errOut)) {
		return nil
	}
	specs, err := s.migSpecs(ctx, set, migA)
	s.r.Check("migrate-a-rollback/sources-back", err == nil && reflect.DeepEqual(specs, migState.specsA), "%v", err)
	left, err := s.migPresence(ctx, set[1:], k8s.ControllerNS)
	s.r.Check("migrate-a-rollback/created-deleted", err == nil && len(left) == 0, "left in %s: %v %v", k8s.ControllerNS, left, err)
	sc, _ := s.getSC(ctx, k8s.ControllerNS, set[0].name)
	s.r.Check("migrate-a-rollback/placeholder-back", sc == nil || sc.GetLabels()[syncManagedByLabel] == syncManagedByValue,
		"seldon-system/%s is the sync loop's placeholder again (or gone): %v", set[0].name, sc != nil)
	teamImgs := s.teamImages(migA, "mlserver", set[0].name)
	_, imgs, err := s.waitImages(ctx, migA, set[1].name, teamImgs, 30*time.Second)
	s.r.Check("migrate-a-rollback/test-case-2", err == nil && strings.Contains(errOut, "verified:"), "%s/%s images %s %v", migA, set[1].name, imgs, err)
	// clean up: the team's objects
	for i := len(set) - 1; i >= 0; i-- {
		_ = s.CP.Dyn.Resource(set[i].gvr).Namespace(migA).Delete(ctx, set[i].name, metav1.DeleteOptions{})
	}
	return nil
}

// scenarioMigrateB: Migration Path B, seldon-system -> mig-team-b with the
// webhook installed; the refusals first.
func scenarioMigrateB(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, migB); err != nil {
		return err
	}
	defer s.migRestoreController(ctx)
	c, err := s.StartStandInController(ctx, migB, k8s.ControllerNS)
	if err != nil {
		return err
	}
	defer c.Stop()
	set := migSet("mig-b")
	// Pattern 2: everything in seldon-system
	if err := s.Apply(ctx, s.migObjects(k8s.ControllerNS, "mig-b", k8s.ControllerNS)...); err != nil {
		return err
	}
	imgs := s.teamImages(k8s.ControllerNS, "mlserver", set[0].name)
	if _, got, err := s.waitImages(ctx, k8s.ControllerNS, set[1].name, imgs, 60*time.Second); err != nil {
		return fmt.Errorf("setup: %s %v", got, err)
	}
	before, err := s.migSpecs(ctx, set, k8s.ControllerNS)
	if err != nil {
		return err
	}
	migState.specsB = before
	dir, err := migDir()
	if err != nil {
		return err
	}
	migState.fileB = filepath.Join(dir, "b.yaml")
	args := []string{"--from", k8s.ControllerNS, "--to", migB, "--selector", migPartOf + "=mig-b", "--delete-source", "--rollback-file", migState.fileB, "--timeout", "90s"}
	nothingWritten := func() (bool, string) {
		p, err := s.migPresence(ctx, set, migB)
		q, err2 := s.migPresence(ctx, set, k8s.ControllerNS)
		_, statErr := os.Stat(migState.fileB)
		return err == nil && err2 == nil && len(p) == 0 && len(q) == len(set) && os.IsNotExist(statErr),
			fmt.Sprintf("in %s: %v, in %s: %v, rollback file: %v", migB, p, k8s.ControllerNS, q, statErr)
	}

	// refused: the controller does not watch the target
	if err := s.migController(ctx, "true", "some-other-team"); err != nil {
		return err
	}
	code, _, errOut := s.runMigrate(ctx, args...)
	ok, detail := nothingWritten()
	s.r.Check("migrate-refused/unwatched-namespace", code == 3 && strings.Contains(errOut, "refusing to move into "+migB) && strings.Contains(errOut, "does not watch it") && ok,
		"exit %d; %s; stderr: %s", code, detail, util.OneLine(errOut))
	// refused: the seed's trap (a watch list with clusterwide=false)
	if err := s.migController(ctx, "false", migB); err != nil {
		return err
	}
	code, _, errOut = s.runMigrate(ctx, args...)
	ok, detail = nothingWritten()
	s.r.Check("migrate-refused/clusterwide-false-trap", code == 3 && strings.Contains(errOut, "is ignored") && ok,
		"exit %d; %s; stderr: %s", code, detail, util.OneLine(errOut))
	if err := s.migController(ctx, "true", migB); err != nil {
		return err
	}
	// refused: a different Model of that name in the target
	objs := s.migObjects(migB, "mig-b", k8s.ControllerNS)
	differing := objs[2].DeepCopy()
	_ = unstructured.SetNestedField(differing.Object, "gs://elsewhere/other", "spec", "storageUri")
	if err := s.Apply(ctx, differing); err != nil {
		return err
	}
	code, out, errOut := s.runMigrate(ctx, args...)
	p, _ := s.migPresence(ctx, set, migB)
	q, _ := s.migPresence(ctx, set, k8s.ControllerNS)
	s.r.Check("migrate-refused/differing-object", code == 3 && strings.Contains(errOut, "refusing to overwrite Model "+migB+"/"+set[2].name) &&
		strings.Contains(out, "REFUSED") && len(p) == 1 && len(q) == len(set),
		"exit %d; in %s: %v, in %s: %v; stdout: %s stderr: %s", code, migB, p, k8s.ControllerNS, q, util.OneLine(out), util.OneLine(errOut))
	// an identical ServerConfig already in the target is skipped
	if err := s.Apply(ctx, objs[0]); err != nil {
		return err
	}

	// the move; --force overwrites the differing Model (the rollback puts it back)
	code, out, errOut = s.runMigrate(ctx, append(args, "--force")...)
	_ = os.WriteFile(filepath.Join(s.CP.Dir, "migrate-b.txt"), []byte(out+errOut), 0o644)
	if !s.r.Check("migrate-b/exit-0", code == 0, "stdout: %s stderr: %s", util.OneLine(out), util.OneLine(errOut)) {
		return nil
	}
	s.r.Check("migrate-b/force-overwrites", strings.Contains(out, "overwrites the different Model in "+migB+" (--force)"), "stdout: %s", util.OneLine(out))
	s.r.Check("migrate-b/identical-skipped", strings.Contains(out, "an identical ServerConfig is already in "+migB) &&
		strings.Contains(out, "warning: ServerConfig "+k8s.ControllerNS+"/"+set[0].name+" is deleted from the controller namespace"), "stdout: %s", util.OneLine(out))
	after, err := s.migSpecs(ctx, set, migB)
	s.r.Check("migrate-b/moved-specs-unchanged", err == nil && reflect.DeepEqual(before, after), "err %v; before %v after %v", err, before, after)
	// the sync loop may already have put its placeholder where the
	// ServerConfig was (checked below): the real one must be gone
	left, err := s.migPresence(ctx, set[1:], k8s.ControllerNS)
	if sc, _ := s.getSC(ctx, k8s.ControllerNS, set[0].name); sc != nil && sc.GetLabels()[syncManagedByLabel] != syncManagedByValue {
		left = append(left, "ServerConfig/"+set[0].name+" (not a placeholder)")
	}
	s.r.Check("migrate-b/sources-deleted", err == nil && len(left) == 0, "left in %s: %v %v", k8s.ControllerNS, left, err)
	// seed Test Case 2: the team namespace's StatefulSet with its own config's images, Pods labelled
	_, got, err := s.waitImages(ctx, migB, set[1].name, imgs, 10*time.Second)
	s.r.Check("migrate-b/test-case-2-statefulset", err == nil, "%s/%s images %s %v", migB, set[1].name, got, err)
	ok, detail = s.migPodsImages(ctx, migB, set[1].name, imgs)
	s.r.Check("migrate-b/test-case-2-pods", ok, "%s", detail)
	// with the webhook installed: the sync loop puts a placeholder where the
	// deleted ServerConfig was, the stand-in controller rebuilds from it, and
	// the webhook keeps the team's images
	ph, took, err := s.waitSC(ctx, k8s.ControllerNS, set[0].name, true, 30*time.Second)
	phOK := err == nil && ph.GetLabels()[syncManagedByLabel] == syncManagedByValue
	_, got, err2 := s.waitImages(ctx, migB, set[1].name, imgs, 10*time.Second)
	s.r.Check("migrate-b/webhook-keeps-images", phOK && err2 == nil, "placeholder after %s (%v), images %s %v", secs(took), err, got, err2)
	cr, rp, de, err := migRollbackCounts(migState.fileB)
	s.r.Check("migrate-b/rollback-file", err == nil && cr == 3 && rp == 1 && de == 5, "created %d, replaced %d (the overwritten Model), deleted %d: %v", cr, rp, de, err)
	return nil
}

// scenarioMigrateBRollback: `migrate --rollback` of Path B: the sources
// come back into seldon-system (replacing the sync loop's placeholder), the
// created objects go; the ServerConfig migrate did not create stays.
func scenarioMigrateBRollback(ctx context.Context, s *Suite) error {
	if migState.fileB == "" {
		return fmt.Errorf("needs migrate-b-to-team-namespace to have run")
	}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, migB, k8s.ControllerNS)
	if err != nil {
		return err
	}
	defer c.Stop()
	set := migSet("mig-b")
	code, out, errOut := s.runMigrate(ctx, "--rollback", migState.fileB, "--dry-run")
	p, _ := s.migPresence(ctx, set, k8s.ControllerNS)
	s.r.Check("migrate-b-rollback/dry-run", code == 0 && strings.Contains(out, "restore ServerConfig "+k8s.ControllerNS+"/"+set[0].name) &&
		strings.Contains(out, "delete Server "+migB+"/"+set[1].name) && len(p) == 1,
		"exit %d, in %s: %v (only the placeholder); stdout: %s", code, k8s.ControllerNS, p, util.OneLine(out))
	code, out, errOut = s.runMigrate(ctx, "--rollback", migState.fileB, "--timeout", "90s")
	_ = os.WriteFile(filepath.Join(s.CP.Dir, "migrate-b-rollback.txt"), []byte(out+errOut), 0o644)
	if !s.r.Check("migrate-b-rollback/exit-0", code == 0, "stdout: %s stderr: %s", util.OneLine(out), util.OneLine(errOut)) {
		return nil
	}
	specs, err := s.migSpecs(ctx, set, k8s.ControllerNS)
	s.r.Check("migrate-b-rollback/sources-back", err == nil && reflect.DeepEqual(specs, migState.specsB), "%v", err)
	sc, _ := s.getSC(ctx, k8s.ControllerNS, set[0].name)
	s.r.Check("migrate-b-rollback/real-config-back", sc != nil && sc.GetLabels()[syncManagedByLabel] == "", "labels %v", sc.GetLabels())
	left, err := s.migPresence(ctx, set, migB)
	s.r.Check("migrate-b-rollback/created-deleted", err == nil && reflect.DeepEqual(left, []string{"ServerConfig/" + set[0].name, "Model/" + set[2].name}),
		"left in %s: %v (the ServerConfig migrate skipped and the Model it overwrote stay) %v", migB, left, err)
	m, _ := s.migGet(ctx, set[2], migB)
	uri := ""
	if m != nil {
		uri, _, _ = unstructured.NestedString(m.Object, "spec", "storageUri")
	}
	s.r.Check("migrate-b-rollback/overwritten-restored", uri == "gs://elsewhere/other", "Model %s/%s storageUri %q", migB, set[2].name, uri)
	imgs := s.teamImages(k8s.ControllerNS, "mlserver", set[0].name)
	_, got, err := s.waitImages(ctx, k8s.ControllerNS, set[1].name, imgs, 30*time.Second)
	s.r.Check("migrate-b-rollback/test-case-1", err == nil && strings.Contains(errOut, "verified:"), "%s/%s images %s %v", k8s.ControllerNS, set[1].name, got, err)
	for i := len(set) - 1; i >= 0; i-- {
		_ = s.CP.Dyn.Resource(set[i].gvr).Namespace(k8s.ControllerNS).Delete(ctx, set[i].name, metav1.DeleteOptions{})
		_ = s.CP.Dyn.Resource(set[i].gvr).Namespace(migB).Delete(ctx, set[i].name, metav1.DeleteOptions{})
	}
	return nil
}
