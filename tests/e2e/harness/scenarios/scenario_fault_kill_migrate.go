package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/util"
)

// The namespaces of fault-kill-mid-migrate: fkmModels Models move from
// fkmSrc to fkmDst (the controller clusterwide, so the target is watched).
const (
	fkmSrc    = "fault-kill-src"
	fkmDst    = "fault-kill-dst"
	fkmModels = 240
)

// fkmSnapshot is what the scenario compares: per "namespace/name" of every
// Model in both namespaces, its spec, labels and annotations.
func (s *Suite) fkmSnapshot(ctx context.Context) (map[string]any, error) {
	out := map[string]any{}
	for _, ns := range []string{fkmSrc, fkmDst} {
		l, err := s.CP.Dyn.Resource(gvrModel).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, m := range l.Items {
			out[ns+"/"+m.GetName()] = map[string]any{"spec": m.Object["spec"], "labels": m.GetLabels(), "annotations": m.GetAnnotations()}
		}
	}
	return out, nil
}

// fkmDiff names the keys of a and b that differ (missing, extra, changed).
func fkmDiff(a, b map[string]any) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "missing "+k)
		} else if !reflect.DeepEqual(v, w) {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "extra "+k)
		}
	}
	sort.Strings(d)
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("... (%d in all)", len(d)))
	}
	return strings.Join(d, ", ")
}

func (s *Suite) fkmCount(ctx context.Context, ns string) (int, error) {
	l, err := s.CP.Dyn.Resource(gvrModel).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	return len(l.Items), nil
}

// fkmArgs are the move's flags, writing its rollback file to file.
func fkmArgs(file string) []string {
	return []string{"--from", fkmSrc, "--to", fkmDst, "--kinds", "models", "--rollback-file", file, "--timeout", "90s"}
}

// fkmKilledMove starts the move and kills it (SIGKILL) once at least
// after Models are in the target; it returns how many were there when
// the process was dead.
func (s *Suite) fkmKilledMove(ctx context.Context, file string, after int) (int, error) {
	cmd := exec.CommandContext(ctx, s.WH.Bin, append([]string{"migrate"}, fkmArgs(file)...)...)
	cmd.Env = append(withoutEnv(os.Environ(), "KUBECONFIG"), "KUBECONFIG="+s.CP.AdminKubeconfig)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case werr := <-exited:
			return 0, fmt.Errorf("migrate ended before the kill (%v): %s", werr, util.OneLine(out.String()))
		default:
		}
		n, lerr := s.fkmCount(ctx, fkmDst)
		if lerr == nil && n >= after {
			break
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("%d Models in %s after 90 s (%v)", n, fkmDst, lerr)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	if err != nil {
		return 0, err
	}
	n, err := s.fkmCount(ctx, fkmDst)
	util.Step("fault-kill-mid-migrate: SIGKILL of migrate with %d of %d Models written", n, fkmModels)
	return n, err
}

// scenarioFaultKillMidMigrate: a move of fkmModels Models is killed
// (SIGKILL) midway, twice. After the first kill, `migrate --rollback` with
// the file it left must put the cluster back exactly as before (every
// Model's spec, labels and annotations in both namespaces, nothing extra):
// the write the kill interrupted included, which the write-ahead entry of
// the rollback file records. After the second, a re-run of the move
// completes, and the rollbacks of the re-run and of the killed run restore
// exactly again. Figures: Models written before each kill, rollback time,
// re-run time.
func scenarioFaultKillMidMigrate(ctx context.Context, s *Suite) error {
	const sc = "fault-kill-mid-migrate"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	for _, ns := range []string{fkmSrc, fkmDst} {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	defer s.migRestoreController(ctx)
	if err := s.migController(ctx, "true", ""); err != nil {
		return err
	}
	var objs []*unstructured.Unstructured
	for i := 0; i < fkmModels; i++ {
		m := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
			"metadata": map[string]any{"name": fmt.Sprintf("fkm-%03d", i), "namespace": fkmSrc,
				"labels":      map[string]any{migPartOf: "fkm"},
				"annotations": map[string]any{"team.example/owner": fmt.Sprintf("owner-%d", i%7)}},
			"spec": map[string]any{"storageUri": fmt.Sprintf("gs://seldon-models/fkm/%d", i), "server": "mlserver", "requirements": []any{"sklearn"}},
		}}
		objs = append(objs, m)
	}
	if err := s.Apply(ctx, objs...); err != nil {
		return err
	}
	defer func() {
		for _, ns := range []string{fkmSrc, fkmDst} {
			_ = s.CP.Dyn.Resource(gvrModel).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: migPartOf + "=fkm"})
		}
	}()
	before, err := s.fkmSnapshot(ctx)
	if err != nil {
		return err
	}
	if len(before) != fkmModels {
		return fmt.Errorf("setup: %d Models in %s and %s, want %d in %s", len(before), fkmSrc, fkmDst, fkmModels, fkmSrc)
	}
	dir, err := os.MkdirTemp("", "serverconfig-e2e-fault-kill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keep := func(name string) {
		_ = exec.Command("cp", filepath.Join(dir, name), filepath.Join(s.CP.Dir, sc+"-"+name)).Run()
	}
	rollback := func(file string) (int, string, time.Duration) {
		t := time.Now()
		code, out, errOut := s.runMigrate(ctx, "--rollback", file, "--timeout", "90s")
		return code, util.OneLine(out + errOut), time.Since(t)
	}

	// 1. killed midway, then rolled back
	killed1, err := s.fkmKilledMove(ctx, filepath.Join(dir, "killed-1.yaml"), fkmModels/4)
	keep("killed-1.yaml")
	if !s.r.Check(checkName(sc, "killed-midway"), err == nil && killed1 < fkmModels, "%d of %d Models written when migrate was killed %v", killed1, fkmModels, err) {
		return nil
	}
	code, out, took1 := rollback(filepath.Join(dir, "killed-1.yaml"))
	now, err := s.fkmSnapshot(ctx)
	d := fkmDiff(before, now)
	s.r.Check(checkName(sc, "rollback-restores-exactly"), code == 0 && err == nil && d == "",
		"rollback of the killed move (%d Models written): exit %d after %s; differences from before the move: [%s] %v; output: %s", killed1, code, secs(took1), d, err, out)

	// 2. killed midway, the move re-run to the end, both rolled back
	killed2, err := s.fkmKilledMove(ctx, filepath.Join(dir, "killed-2.yaml"), fkmModels/2)
	keep("killed-2.yaml")
	if !s.r.Check(checkName(sc, "killed-midway-again"), err == nil && killed2 < fkmModels, "%d of %d Models written when migrate was killed %v", killed2, fkmModels, err) {
		return nil
	}
	t := time.Now()
	code, mout, merr := s.runMigrate(ctx, fkmArgs(filepath.Join(dir, "rerun.yaml"))...)
	rerun := time.Since(t)
	keep("rerun.yaml")
	n, cerr := s.fkmCount(ctx, fkmDst)
	s.r.Check(checkName(sc, "rerun-completes"), code == 0 && cerr == nil && n == fkmModels,
		"re-run after the kill: exit %d after %s, %d of %d Models in %s %v; output: %s", code, secs(rerun), n, fkmModels, fkmDst, cerr, util.OneLine(mout+merr))
	code3, out3, took3 := rollback(filepath.Join(dir, "rerun.yaml"))
	code2, out2, took2 := rollback(filepath.Join(dir, "killed-2.yaml"))
	now, err = s.fkmSnapshot(ctx)
	d = fkmDiff(before, now)
	s.r.Check(checkName(sc, "rerun-rollback-restores-exactly"), code3 == 0 && code2 == 0 && err == nil && d == "",
		"rollback of the re-run: exit %d after %s; of the killed move (%d Models written): exit %d after %s; differences from before: [%s] %v; output: %s | %s",
		code3, secs(took3), killed2, code2, secs(took2), d, err, out3, out2)
	util.Step("FIGURE %s: killed with %d and %d of %d Models written; rollback %s (after the first kill); re-run %s; rollbacks %s (re-run) + %s (killed move)",
		sc, killed1, killed2, fkmModels, secs(took1), secs(rerun), secs(took3), secs(took2))
	return nil
}
