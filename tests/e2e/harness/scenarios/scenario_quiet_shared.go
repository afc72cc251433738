package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The stock controller copies the controller-namespace ServerConfig's live
// labels and annotations into its desired object and pod template on
// every reconcile, and compares (objectmatcher, seldon.io/last-applied).
// A placeholder whose metadata changed -- as the used-by list of earlier
// releases did whenever a namespace started or stopped using the name --
// made every Server of the name, in every namespace, get a full Update on
// every later reconcile. These scenarios count writes from the API
// server's audit log (every write, even the no-op Updates no watch sees)
// and from the stored resourceVersions.

// quietWorkloads are the workloads ("srv" in each namespace) whose writes
// are counted.
type quietWorkloads struct {
	s   *Suite
	nss []string
}

func (q quietWorkloads) rvs(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, ns := range q.nss {
		rv, err := q.s.settledRV(ctx, ns, "srv")
		if err != nil {
			return nil, err
		}
		out[ns] = rv
	}
	return out, nil
}

// writesSince counts the writes to every workload since `since` (rv0:
// their resourceVersions then) and reads their resourceVersions now.
func (q quietWorkloads) writesSince(ctx context.Context, since time.Time, rv0 map[string]string) (writes, changes int, detail []string, err error) {
	for _, ns := range q.nss {
		w, c, d, last, err := q.s.CP.WorkloadWrites(since, "statefulsets", ns, map[string]string{"srv": rv0[ns]})
		if err != nil {
			return 0, 0, nil, err
		}
		sts, err := q.s.CP.GetSTS(ctx, ns, "srv")
		if err != nil {
			return 0, 0, nil, err
		}
		if sts.ResourceVersion != last["srv"] && c == 0 {
			c = 1 // the watch saw a change the audit log did not
			d = append(d, fmt.Sprintf("%s/srv resourceVersion %s -> %s (audit log: %s)", ns, rv0[ns], sts.ResourceVersion, last["srv"]))
		}
		writes, changes, detail = writes+w, changes+c, append(detail, d...)
	}
	return writes, changes, detail, nil
}

// quiet checks that nothing is written to the workloads over the window.
func (q quietWorkloads) quiet(ctx context.Context, name string) error {
	rv0, err := q.rvs(ctx)
	if err != nil {
		return err
	}
	since := time.Now()
	time.Sleep(time.Duration(q.s.Cfg.QuietSeconds) * time.Second)
	writes, changes, detail, err := q.writesSince(ctx, since, rv0)
	q.s.r.Check(name, err == nil && writes == 0 && changes == 0,
		"%ds window over %v: %d writes, %d changing a resourceVersion (audit log and watch) %v %v",
		q.s.Cfg.QuietSeconds, q.nss, writes, changes, detail, err)
	return nil
}

// scenarioQuietSharedName: three namespaces join one ServerConfig name one
// after another, one leaves, and the controller restarts; after each
// change settles nothing is written, and no change writes the other
// namespaces' workloads at all.
func scenarioQuietSharedName(ctx context.Context, s *Suite) error {
	const sc, name = "quiet-shared-name", "qs-shared"
	nss := []string{"qs-1", "qs-2", "qs-3"}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	for _, ns := range nss {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	c, err := s.StartStandInController(ctx, nss...)
	if err != nil {
		return err
	}
	defer c.Stop() // Stop is idempotent: the scenario stops it earlier
	var members []string
	// change runs f and checks that the members' workloads (other than
	// the ones f itself is about) are not written by it, then the window
	change := func(step string, others []string, f func() error) error {
		before := quietWorkloads{s, others}
		rv0, err := before.rvs(ctx)
		if err != nil {
			return err
		}
		since := time.Now()
		if err := f(); err != nil {
			return err
		}
		if _, err := (quietWorkloads{s, members}).rvs(ctx); err != nil { // settled
			return err
		}
		writes, changes, detail, err := before.writesSince(ctx, since, rv0)
		s.r.Check(checkName(sc, step, "others-untouched"), err == nil && writes == 0 && changes == 0,
			"%s: %d writes to the other namespaces' workloads %v, %d changing a resourceVersion %v %v",
			step, writes, others, changes, detail, err)
		return (quietWorkloads{s, members}).quiet(ctx, checkName(sc, step, "quiet"))
	}
	for _, ns := range nss {
		others := append([]string(nil), members...)
		ns := ns
		err := change("join-"+ns, others, func() error {
			if err := s.Apply(ctx, s.teamConfig(ns, name), k8s.NewServer(ns, "srv", name, 1, nil)); err != nil {
				return err
			}
			_, imgs, err := s.waitImages(ctx, ns, "srv", s.teamImages(ns, "mlserver", name), 60*time.Second)
			if err != nil {
				return fmt.Errorf("%s/srv: %s %w", ns, imgs, err)
			}
			members = append(members, ns)
			return nil
		})
		if err != nil {
			return err
		}
	}
	leaving := nss[1]
	members = []string{nss[0], nss[2]}
	if err := change("leave-"+leaving, members, func() error {
		if err := s.deleteServer(ctx, leaving, "srv"); err != nil {
			return err
		}
		return s.deleteSC(ctx, leaving, name)
	}); err != nil {
		return err
	}
	ph, err := s.getSC(ctx, k8s.ControllerNS, name)
	okPH, detail := false, fmt.Sprint(err)
	if err == nil && ph != nil {
		okPH, detail = placeholderFacts(ph)
	}
	s.r.Check(checkName(sc, "placeholder-constant"), okPH, "%s", detail)
	// the controller restarts: it reconciles every Server once
	c.Stop()
	return change("controller-restart", members, func() error {
		c2, err := s.StartStandInController(ctx, members...)
		if err != nil {
			return err
		}
		time.Sleep(3 * time.Second) // its initial list reconciles every Server
		c2.Stop()
		return nil
	})
}

// scenarioUpgradeLegacyPlaceholders: workloads admitted while the
// controller namespace held a placeholder of an earlier release's shape
// (the users' container names, a used-by list that the pod templates
// carry a copy of). The release that keeps one constant placeholder per
// name rewrites it; that must roll no Pod and end quiet.
func scenarioUpgradeLegacyPlaceholders(ctx context.Context, s *Suite) error {
	const sc, name = "upgrade-legacy-placeholders", "up-shared"
	nss := []string{"up-1", "up-2"}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	for _, ns := range nss {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// the placeholder as this release writes it, for its exact text
	if err := s.Apply(ctx, s.teamConfig(nss[0], name)); err != nil {
		return err
	}
	current, _, err := s.waitSC(ctx, k8s.ControllerNS, name, true, 30*time.Second)
	if err != nil {
		return err
	}
	// the earlier release: no sync loop of this release runs; the
	// placeholder gets the old shape, as the old sync loop wrote it
	s.WH.Stop()
	old := s.WH.WithoutSync()
	if err := old.Start(); err != nil {
		return err
	}
	legacy := current.DeepCopy()
	ann := legacy.GetAnnotations()
	ann[syncUsedByAnn] = strings.Join(nss, ",")
	legacy.SetAnnotations(ann)
	_ = unstructured.SetNestedSlice(legacy.Object, []any{
		map[string]any{"name": "rclone"}, map[string]any{"name": "agent"}, map[string]any{"name": "mlserver"},
	}, "spec", "podSpec", "containers")
	if _, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(k8s.ControllerNS).Update(ctx, legacy, metav1.UpdateOptions{FieldManager: syncFieldManager}); err != nil {
		old.Stop()
		return fmt.Errorf("the earlier release's placeholder: %w", err)
	}
	c, err := s.StartStandInController(ctx, nss...)
	if err != nil {
		old.Stop()
		return err
	}
	defer c.Stop()
	for _, ns := range nss {
		if err := s.Apply(ctx, s.teamConfig(ns, name), k8s.NewServer(ns, "srv", name, 1, nil)); err != nil {
			return err
		}
		if _, imgs, err := s.waitImages(ctx, ns, "srv", s.teamImages(ns, "mlserver", name), 60*time.Second); err != nil {
			old.Stop()
			return fmt.Errorf("%s/srv: %s %w", ns, imgs, err)
		}
	}
	q := quietWorkloads{s, nss}
	rv0, err := q.rvs(ctx)
	if err != nil {
		return err
	}
	type state struct {
		template   string
		generation int64
		pods       []string
	}
	snapshot := func() (map[string]state, error) {
		out := map[string]state{}
		for _, ns := range nss {
			sts, err := s.CP.GetSTS(ctx, ns, "srv")
			if err != nil {
				return nil, err
			}
			pods, err := s.CP.WaitPods(ctx, ns, "srv", 1, 60*time.Second)
			if err != nil {
				return nil, err
			}
			tmpl, _ := json.Marshal(sts.Spec.Template)
			out[ns] = state{template: string(tmpl), generation: sts.Generation, pods: podUIDs(pods)}
		}
		return out, nil
	}
	before, err := snapshot()
	if err != nil {
		return err
	}
	hasCopy := 0
	for _, ns := range nss {
		sts, _ := s.CP.GetSTS(ctx, ns, "srv")
		if sts != nil && sts.Spec.Template.Annotations[syncUsedByAnn] != "" {
			hasCopy++
		}
	}
	s.r.Check(checkName(sc, "before-upgrade"), hasCopy == len(nss), "%d of %d pod templates carry the earlier placeholder's used-by copy", hasCopy, len(nss))

	// the upgrade: this release's webhook with its sync loop
	since := time.Now()
	old.Stop()
	if err := s.WH.Start(); err != nil {
		return err
	}
	var ph *unstructured.Unstructured
	_ = util.Poll(30*time.Second, func() error {
		ph, err = s.getSC(ctx, k8s.ControllerNS, name)
		if err != nil || ph == nil {
			return fmt.Errorf("placeholder: %v", err)
		}
		if ok, d := placeholderFacts(ph); !ok {
			return fmt.Errorf("%s", d)
		}
		return nil
	})
	okPH, phDetail := false, "missing"
	if ph != nil {
		okPH, phDetail = placeholderFacts(ph)
	}
	s.r.Check(checkName(sc, "placeholder-rewritten"), okPH, "%s", phDetail)
	if _, err := q.rvs(ctx); err != nil {
		return err
	}
	writes, changes, detail, err := q.writesSince(ctx, since, rv0)
	after, serr := snapshot()
	same := serr == nil
	var what []string
	for _, ns := range nss {
		b, a := before[ns], after[ns]
		if a.template != b.template || a.generation != b.generation || strings.Join(a.pods, ",") != strings.Join(b.pods, ",") {
			same = false
			what = append(what, fmt.Sprintf("%s: generation %d -> %d, pods %v -> %v", ns, b.generation, a.generation, b.pods, a.pods))
		}
	}
	s.r.Check(checkName(sc, "no-pod-rolled"), same && err == nil, "pod templates, generations and Pods unchanged by the upgrade %v %v; writes during it: %d (%d changing a resourceVersion) %v", what, serr, writes, changes, detail)
	util.Step("FIGURE %s: upgrading %d workloads wrote %d times, %d changing a resourceVersion, 0 Pods rolled", sc, len(nss), writes, changes)
	if err := q.quiet(ctx, checkName(sc, "quiet-after")); err != nil {
		return err
	}
	for _, ns := range nss {
		_ = s.deleteServer(ctx, ns, "srv")
		_ = s.deleteSC(ctx, ns, name)
	}
	return nil
}

func podUIDs(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, string(p.UID))
	}
	return out
}

// scenarioSharedConfigCost: a Server whose ServerConfig name the controller
// namespace holds as a real shared config (with the platform's images).
// The stock controller's desired object then always carries the platform's
// images, the stored one the team's, so every reconcile finds a difference
// (objectmatcher) and sends a full Update; the webhook turns it into a
// no-op. Replaying the real controller's audit trace showed the difference
// is the images alone. This measures the cost: Updates per reconcile, and
// that none of them changes the stored object.
func scenarioSharedConfigCost(ctx context.Context, s *Suite) error {
	const sc, ns, name = "shared-config-cost", "shared-cost", "shared-cost-config"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", name, k8s.FormPlatform), s.teamConfig(ns, name),
		k8s.NewServer(ns, "srv", name, 1, nil)); err != nil {
		return err
	}
	defer func() {
		_ = s.deleteServer(context.Background(), ns, "srv")
		_ = s.deleteSC(context.Background(), ns, name)
		_ = s.deleteSC(context.Background(), k8s.ControllerNS, name)
	}()
	c, err := s.StartStandInController(ctx, ns)
	if err != nil {
		return err
	}
	if _, imgs, err := s.waitImages(ctx, ns, "srv", s.teamImages(ns, "mlserver", name), 60*time.Second); err != nil {
		c.Stop()
		return fmt.Errorf("%s/srv: %s %w", ns, imgs, err)
	}
	c.Stop()
	q := quietWorkloads{s, []string{ns}}
	// The stock controller's seldon.io/last-applied records the status too,
	// so the first reconcile after kube-controller-manager's status writes
	// changes that annotation (once, as in the trace): one warm-up restart
	// once the status has settled, so the restarts measured start from a
	// last-applied that is current.
	if _, err := q.rvs(ctx); err != nil {
		return err
	}
	if c, err = s.StartStandInController(ctx, ns); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	c.Stop()
	rv0, err := q.rvs(ctx)
	if err != nil {
		return err
	}
	// three reconciles: three controller restarts
	// (a restart may reconcile more than once: a status write of the
	// workload controller is a watch event too), so count what it did
	const restarts = 3
	var reconciles int64
	since := time.Now()
	for i := 0; i < restarts; i++ {
		c, err := s.StartStandInController(ctx, ns)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		c.Stop()
		reconciles += c.Reconciles.Load()
	}
	writes, changes, detail, err := q.writesSince(ctx, since, rv0)
	s.r.Check(checkName(sc, "no-op-updates"), err == nil && changes == 0 && writes >= restarts && int64(writes) <= reconciles,
		"%d restarts, %d reconciles sent %d full Updates (%v), %d changed the stored object %v", restarts, reconciles, writes, detail, changes, err)
	util.Step("FIGURE %s: a shared real ServerConfig of the name costs %d full Update(s) per %d reconciles, each a no-op (resourceVersion unchanged)", sc, writes, reconciles)
	return nil
}
