package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioQuiet: the webhook must be an exact fixed point. The stock
// controller re-sends its full desired object whenever it reconciles and
// finds the stored object different from it (which, with the webhook, it
// always is); every write the webhook does not turn into a no-op changes
// resourceVersion, which the controller watches (Owns), which makes it
// reconcile again: an endless write loop. Here the stand-in controller runs
// that watch loop; after convergence and a forced reconcile ("controller
// restart") resourceVersion must not move for --quiet-seconds, in both
// forms of the controller-namespace ServerConfig.
func scenarioQuiet(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.ensurePattern1(ctx); err != nil {
		return err
	}
	window := time.Duration(s.Cfg.QuietSeconds) * time.Second
	for i, form := range []k8s.ServerConfigForm{k8s.FormPlatform, k8s.FormEmpty} {
		// the controller reacts to a ServerConfig change in its namespace by
		// re-sending every Server's StatefulSet built from it
		if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", p1ServerConfig, form)); err != nil {
			return err
		}
		for _, ns := range appNamespaces {
			name := checkName("quiet", form, ns)
			if _, err := s.settledRV(ctx, ns, p1Server); err != nil {
				return err
			}
			before, err := s.CP.GetSTS(ctx, ns, p1Server)
			if err != nil {
				return err
			}
			_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
			if !s.r.Check(name+"/resend-accepted", err == nil, "%v", err) {
				continue
			}
			// the controller's desired object changed (its seldon.io/last-applied
			// annotation may legitimately change with it), the template not
			d := JSONDiff(before.Spec, stored.Spec)
			s.r.Check(name+"/template-unchanged", d == "" && stored.Generation == before.Generation,
				"full Update built from the %s config: generation %d -> %d %s", form, before.Generation, stored.Generation, d)
			// the same desired object again: must not write at all
			rv1 := stored.ResourceVersion
			_, stored, err = s.StandIn.Reconcile(ctx, ns, p1Server)
			s.r.Check(name+"/identical-resend-is-noop", err == nil && stored.ResourceVersion == rv1,
				"resourceVersion %s -> %s %v %s", rv1, rvOf(stored), err, changed(before, stored))

			// a real change: touch the Server's annotations (they flow into
			// the StatefulSet); one write, then quiet again
			touch := k8s.NewServer(ns, p1Server, p1ServerConfig, replicasOf(stored.Spec.Replicas), nil)
			touch.SetAnnotations(map[string]string{"e2e.serverconfig-webhook/touched": fmt.Sprint(i)})
			if err := s.Apply(ctx, touch); err != nil {
				return err
			}
			_, stored, err = s.StandIn.Reconcile(ctx, ns, p1Server)
			if !s.r.Check(name+"/touch-accepted", err == nil, "%v", err) {
				continue
			}
			team := s.teamImages(ns, "mlserver", p1ServerConfig)
			s.r.Check(name+"/touch-keeps-team-images", k8s.SameImages(k8s.TemplateImages(stored.Spec.Template.Spec), team),
				"%s", k8s.FmtImages(k8s.TemplateImages(stored.Spec.Template.Spec)))
		}

		// the controller runs (watch-driven loops on both namespaces);
		// restart it: a forced reconcile each, then let it converge
		loops := map[string]*ControllerLoop{}
		for _, ns := range appNamespaces {
			if _, err := s.settledRV(ctx, ns, p1Server); err != nil {
				return err
			}
			l, err := s.StartControllerLoop(ctx, ns, p1Server)
			if err != nil {
				return err
			}
			defer l.Stop()
			loops[ns] = l
		}
		for _, ns := range appNamespaces {
			if _, _, err := s.StandIn.Reconcile(ctx, ns, p1Server); err != nil {
				return err
			}
		}
		for _, ns := range appNamespaces {
			if _, err := s.settledRV(ctx, ns, p1Server); err != nil {
				return err
			}
			// A no-op Update may still be written once when another manager
			// (kube-controller-manager's status writes) holds a newer
			// managedFields entry: the API server re-sorts the entries. That
			// is the API server's own behaviour, not a change of the object.
			var objChanges []string
			for _, c := range loops[ns].Changes() {
				if !strings.HasPrefix(c, "only managedFields") && c != "no difference" {
					objChanges = append(objChanges, c)
				}
			}
			s.r.Check(checkName("quiet", form, ns, "restart-changes-nothing"), len(objChanges) == 0,
				"%d writes after the restart, object changes: %v (all: %v)", loops[ns].Events(), objChanges, loops[ns].Changes())
		}

		// the window: restart once more, then nothing may be written
		rv0 := map[string]string{}
		ev0 := map[string]int64{}
		for _, ns := range appNamespaces {
			sts, err := s.CP.GetSTS(ctx, ns, p1Server)
			if err != nil {
				return err
			}
			rv0[ns], ev0[ns] = sts.ResourceVersion, loops[ns].Events()
		}
		updates0 := s.StandIn.Updates.Load()
		for _, ns := range appNamespaces {
			if _, _, err := s.StandIn.Reconcile(ctx, ns, p1Server); err != nil {
				return err
			}
		}
		time.Sleep(window)
		sent := s.StandIn.Updates.Load() - updates0
		for _, ns := range appNamespaces {
			sts, err := s.CP.GetSTS(ctx, ns, p1Server)
			if err != nil {
				return err
			}
			events := loops[ns].Events() - ev0[ns]
			s.r.Check(checkName("quiet", form, ns, "resourceVersion-stable"),
				sts.ResourceVersion == rv0[ns] && events == 0,
				"%v window: resourceVersion %s -> %s, %d writes seen; the controller sent %d Updates in the window (both namespaces); changes: %v",
				window, rv0[ns], sts.ResourceVersion, events, sent, loops[ns].Changes())
			loops[ns].Stop()
		}
		util.Step("quiet (%s): the stand-in controller sent %d Updates in the %v window, none written", form, sent, window)
	}
	return nil
}

// changed says what differs between two versions of a StatefulSet, beyond
// resourceVersion and managedFields.
func changed(a, b *appsv1.StatefulSet) string {
	if a == nil || b == nil {
		return ""
	}
	x, y := a.DeepCopy(), b.DeepCopy()
	for _, o := range []*appsv1.StatefulSet{x, y} {
		o.ResourceVersion, o.ManagedFields = "", nil
	}
	if d := JSONDiff(x, y); d != "" {
		return d
	}
	if d := JSONDiff(a.ManagedFields, b.ManagedFields); d != "" {
		return "only managedFields: " + d
	}
	return "no difference"
}

func rvOf(s *appsv1.StatefulSet) string {
	if s == nil {
		return "<nil>"
	}
	return s.ResourceVersion
}

func replicasOf(p *int32) int64 {
	if p == nil {
		return 1
	}
	return int64(*p)
}

// settledRV waits until kube-controller-manager has stopped writing the
// StatefulSet's status (resourceVersion unchanged for 2 s) and returns it.
func (s *Suite) settledRV(ctx context.Context, ns, name string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	last, same := "", 0
	for time.Now().Before(deadline) {
		sts, err := s.CP.GetSTS(ctx, ns, name)
		if err != nil {
			return "", err
		}
		if sts.ResourceVersion == last {
			same++
			if same >= 4 {
				return last, nil
			}
		} else {
			last, same = sts.ResourceVersion, 0
		}
		time.Sleep(500 * time.Millisecond)
	}
	return "", fmt.Errorf("statefulset %s/%s kept changing for 60 s", ns, name)
}
