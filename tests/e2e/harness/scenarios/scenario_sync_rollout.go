package scenarios

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// The team namespace of the quiet and rollout scenarios: its ServerConfig
// name exists nowhere else, so the sync loop (not the test) makes the
// placeholder in seldon-system.
const (
	syncQNS     = "sync-team-q"
	syncQConfig = "sync-q-config"
	syncQServer = "mlserver"
	syncQHeld   = "mlserver-held"
)

// teamConfigSuffix is the team's ServerConfig with suffix appended to every
// image (a new release of the team's images).
func (s *Suite) teamConfigSuffix(ns, name, suffix string) *unstructured.Unstructured {
	return k8s.WithImageSuffix(s.teamConfig(ns, name), suffix)
}

// ensureSyncQ sets the namespace up (idempotent): team config, Server, the
// placeholder made by the sync loop, the StatefulSet built by the stand-in
// controller (which the caller started) with the team's images.
func (s *Suite) ensureSyncQ(ctx context.Context, c *standin.StandInController) error {
	if err := s.CP.EnsureNamespace(ctx, syncQNS); err != nil {
		return err
	}
	if cur, err := s.getSC(ctx, syncQNS, syncQConfig); err != nil {
		return err
	} else if cur == nil {
		if ph, err := s.getSC(ctx, k8s.ControllerNS, syncQConfig); err != nil || ph != nil {
			return fmt.Errorf("precondition: %s/%s must not exist yet (%v)", k8s.ControllerNS, syncQConfig, err)
		}
		if err := s.Apply(ctx, s.teamConfig(syncQNS, syncQConfig)); err != nil {
			return err
		}
	}
	if err := s.Apply(ctx, k8s.NewServer(syncQNS, syncQServer, syncQConfig, 1, nil)); err != nil {
		return err
	}
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, syncQConfig, true, 30*time.Second); err != nil {
		return err
	}
	return util.Poll(60*time.Second, func() error {
		sts, err := s.CP.GetSTS(ctx, syncQNS, syncQServer)
		if err != nil {
			return err
		}
		if sts.Annotations[syncSourceAnn] == "" {
			return fmt.Errorf("not admitted by the webhook yet")
		}
		return nil
	})
}

// scenarioSyncQuiet: with a placeholder the sync loop created, the stock
// controller's own comparison (objectmatcher, three-way) finds nothing to
// change on the fixed StatefulSet: after convergence, a forced reconcile
// (Server annotations touched) and a controller restart, no Update is sent
// and resourceVersion does not move for --quiet-seconds.
func scenarioSyncQuiet(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, syncQNS)
	if err != nil {
		return err
	}
	defer func() { c.Stop() }()
	if err := s.ensureSyncQ(ctx, c); err != nil {
		return err
	}
	ph, err := s.getSC(ctx, k8s.ControllerNS, syncQConfig)
	if err != nil || ph == nil {
		return fmt.Errorf("placeholder: %v", err)
	}
	ok, detail := placeholderFacts(ph)
	s.r.Check("sync-quiet/placeholder-by-sync-loop", ok, "%s", detail)
	if _, err := s.settledRV(ctx, syncQNS, syncQServer); err != nil {
		return err
	}
	// force a reconcile with a real change: the Server's annotations flow
	// into the StatefulSet (one Update, fixed by the webhook)
	u0 := c.Updates.Load()
	touch := k8s.NewServer(syncQNS, syncQServer, syncQConfig, 1, nil)
	touch.SetAnnotations(map[string]string{"e2e.serverconfig-webhook/touched": time.Now().Format(time.RFC3339Nano)})
	if err := s.Apply(ctx, touch); err != nil {
		return err
	}
	err = util.Poll(15*time.Second, func() error {
		sts, err := s.CP.GetSTS(ctx, syncQNS, syncQServer)
		if err != nil {
			return err
		}
		if sts.Spec.Template.Annotations["e2e.serverconfig-webhook/touched"] != touch.GetAnnotations()["e2e.serverconfig-webhook/touched"] {
			return fmt.Errorf("touch not in the template yet")
		}
		return nil
	})
	if _, serr := s.settledRV(ctx, syncQNS, syncQServer); serr != nil {
		return serr
	}
	team := s.teamImages(syncQNS, "mlserver", syncQConfig)
	sts, gerr := s.CP.GetSTS(ctx, syncQNS, syncQServer)
	s.r.Check("sync-quiet/touch-converges", err == nil && gerr == nil && k8s.SameImages(k8s.TemplateImages(sts.Spec.Template.Spec), team),
		"%d Updates for the touch (objectmatcher patch %s) %v %v", c.Updates.Load()-u0, c.LastPatch(syncQNS, syncQServer), err, gerr)

	// restart the controller: its initial list reconciles the Server again
	c.Stop()
	if c, err = s.StartStandInController(ctx, syncQNS); err != nil {
		return err
	}
	err = util.Poll(10*time.Second, func() error {
		if c.Reconciles.Load() == 0 {
			return fmt.Errorf("no reconcile after the restart")
		}
		return nil
	})
	if _, serr := s.settledRV(ctx, syncQNS, syncQServer); serr != nil {
		return serr
	}
	s.r.Check("sync-quiet/restart-no-update", err == nil && c.Updates.Load() == 0,
		"after the restart: %d reconciles, %d no-change, %d Updates (patch %s) %v", c.Reconciles.Load(), c.NoChange.Load(), c.Updates.Load(), c.LastPatch(syncQNS, syncQServer), err)

	// the window: restart once more (a forced comparison inside it), then
	// nothing may be written
	before, err := s.CP.GetSTS(ctx, syncQNS, syncQServer)
	if err != nil {
		return err
	}
	c.Stop()
	if c, err = s.StartStandInController(ctx, syncQNS); err != nil {
		return err
	}
	window := time.Duration(s.Cfg.QuietSeconds) * time.Second
	time.Sleep(window)
	after, err := s.CP.GetSTS(ctx, syncQNS, syncQServer)
	if err != nil {
		return err
	}
	s.r.Check("sync-quiet/window-quiet", after.ResourceVersion == before.ResourceVersion && c.Updates.Load() == 0 && c.NoChange.Load() >= 1,
		"%v window: resourceVersion %s -> %s; the stand-in (objectmatcher) made %d comparisons, %d found no change, sent %d Updates; %s",
		window, before.ResourceVersion, after.ResourceVersion, c.Reconciles.Load(), c.NoChange.Load(), c.Updates.Load(), changed(before, after))
	util.Step("sync-quiet: the stand-in controller sent %d Updates in the %v window", c.Updates.Load(), window)
	return nil
}

// scenarioSyncRollout: a change of the team's ServerConfig reaches the
// StatefulSet within seconds (RolledOut Event); a Server with
// disableAutoUpdate: true keeps its template.
func scenarioSyncRollout(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, syncQNS)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := s.ensureSyncQ(ctx, c); err != nil {
		return err
	}
	// the held Server, built from the current team config
	if err := s.Apply(ctx, k8s.NewServer(syncQNS, syncQHeld, syncQConfig, 1, map[string]any{"disableAutoUpdate": true})); err != nil {
		return err
	}
	cur, err := s.getSC(ctx, syncQNS, syncQConfig)
	if err != nil || cur == nil {
		return fmt.Errorf("team config: %v", err)
	}
	oldImages := k8s.ExpectedImages(cur)
	if _, imgs, err := s.waitImages(ctx, syncQNS, syncQHeld, oldImages, 60*time.Second); err != nil {
		return fmt.Errorf("held Server's StatefulSet: %s %v", imgs, err)
	}
	for _, n := range []string{syncQServer, syncQHeld} {
		if _, err := s.settledRV(ctx, syncQNS, n); err != nil {
			return err
		}
	}
	held0, err := s.CP.GetSTS(ctx, syncQNS, syncQHeld)
	if err != nil {
		return err
	}
	u0 := c.Updates.Load()

	suffix := fmt.Sprintf("-r%d", time.Now().Unix()%100000)
	newCfg := s.teamConfigSuffix(syncQNS, syncQConfig, suffix)
	newImages := k8s.ExpectedImages(newCfg)
	t0 := time.Now()
	if err := s.Apply(ctx, newCfg); err != nil {
		return err
	}
	took, imgs, err := s.waitImages(ctx, syncQNS, syncQServer, newImages, 30*time.Second)
	s.r.Check("sync-rollout/new-image-within-seconds", err == nil && took < 15*time.Second,
		"StatefulSet template has the new images %s after the ServerConfig change: %s %v", secs(took), imgs, err)
	util.Step("sync-rollout: new image in the StatefulSet template after %s", secs(took))
	msg, err := s.waitServerEvent(ctx, syncQNS, syncQServer, "RolledOut", 10*time.Second)
	s.r.Check("sync-rollout/event-RolledOut", err == nil, "%q %v", msg, err)

	// disableAutoUpdate: unchanged after a fixed wait
	if rest := 8*time.Second - time.Since(t0); rest > 0 {
		time.Sleep(rest)
	}
	held, err := s.CP.GetSTS(ctx, syncQNS, syncQHeld)
	if err != nil {
		return err
	}
	evs, _ := s.ServerEvents(ctx, syncQNS, syncQHeld, "RolledOut")
	s.r.Check("sync-rollout/disableAutoUpdate-held", held.ResourceVersion == held0.ResourceVersion &&
		k8s.SameImages(k8s.TemplateImages(held.Spec.Template.Spec), oldImages) && len(evs) == 0,
		"%s after the change: images %s, resourceVersion %s -> %s, %d RolledOut Events",
		secs(time.Since(t0)), k8s.FmtImages(k8s.TemplateImages(held.Spec.Template.Spec)), held0.ResourceVersion, held.ResourceVersion, len(evs))
	util.Step("sync-rollout: the stand-in controller sent %d Updates during the rollout", c.Updates.Load()-u0)
	return s.deleteServer(ctx, syncQNS, syncQHeld)
}
