package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioSyncStandIn: the stand-in controller behaves like the stock one
// where the sync loop matters. No ServerConfig of the name in seldon-system:
// not-found reported, nothing built. A ServerConfig of that name appearing
// in seldon-system, or changing in any other namespace, triggers a
// reconcile; only a real difference (objectmatcher) sends an Update.
func scenarioSyncStandIn(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	const ns, other, scName, server = "sync-standin", "sync-standin-other", "sync-standin-config", "probe"
	for _, n := range []string{ns, other} {
		if err := s.CP.EnsureNamespace(ctx, n); err != nil {
			return err
		}
	}
	c, err := s.StartStandInController(ctx, ns)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := s.Apply(ctx, k8s.NewServer(ns, server, scName, 1, nil)); err != nil {
		return err
	}
	err = util.Poll(15*time.Second, func() error {
		if c.NotFoundMessage(ns, server) == "" {
			return fmt.Errorf("no not-found reported")
		}
		return nil
	})
	s.r.Check("sync-standin/not-found-reported", err == nil, "%q %v", c.NotFoundMessage(ns, server), err)
	// as the stock controller: the Server's StatefulSetReady condition False
	// with the lookup's error (in its reason), and no Event
	want := fmt.Sprintf("serverconfigs.mlops.seldon.io %q not found", scName)
	cond, err := s.waitServerCondition(ctx, ns, server, standin.Mode291.ConditionType(), "False",
		func(c standin.ServerCondition) bool { return c.Reason == want }, 10*time.Second)
	evs, eerr := s.controllerEvents(ctx, ns, server)
	s.r.Check("sync-standin/not-found-condition", err == nil && eerr == nil && len(evs) == 0,
		"%s=%s reason %q (want %q); Events not by the webhook: %q %v %v", cond.Type, cond.Status, cond.Reason, want, evs, err, eerr)
	time.Sleep(3 * time.Second)
	_, gerr := s.CP.GetSTS(ctx, ns, server)
	s.r.Check("sync-standin/nothing-built", apierrors.IsNotFound(gerr) && c.Creates.Load() == 0,
		"get: %v; %d creates, %d not-found reconciles (retried with backoff)", gerr, c.Creates.Load(), c.NotFound.Load())
	// no team ServerConfig uses the name: the sync loop makes no placeholder
	ph, err := s.getSC(ctx, k8s.ControllerNS, scName)
	s.r.Check("sync-standin/no-placeholder-without-user", err == nil && ph == nil, "%v %v", ph != nil, err)

	// a ServerConfig of that name appears in seldon-system (a real shared
	// one): the ServerConfig watch reconciles the Server and it is built
	t0 := time.Now()
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", scName, k8s.FormPlatform)); err != nil {
		return err
	}
	defer func() { _ = s.deleteSC(ctx, k8s.ControllerNS, scName) }()
	_, imgs, err := s.waitImages(ctx, ns, server, s.PlatformImages("mlserver"), 30*time.Second)
	s.r.Check("sync-standin/built-on-serverconfig-event", err == nil && c.Creates.Load() == 1,
		"after %s: %s (the webhook allows: seldon-system holds a real shared config, --on-missing=auto); %d creates %v",
		secs(time.Since(t0)), imgs, c.Creates.Load(), err)
	if _, err := s.settledRV(ctx, ns, server); err != nil {
		return err
	}

	// a ServerConfig of the same name changes in ANOTHER namespace: the
	// Server is reconciled, nothing differs, no Update
	r0, u0 := c.Reconciles.Load(), c.Updates.Load()
	if err := s.Apply(ctx, s.teamConfig(other, scName)); err != nil {
		return err
	}
	defer func() { _ = s.deleteSC(ctx, other, scName) }()
	err = util.Poll(10*time.Second, func() error {
		if c.Reconciles.Load() == r0 {
			return fmt.Errorf("no reconcile")
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	s.r.Check("sync-standin/reconciles-on-other-namespace-config", err == nil && c.Updates.Load() == u0,
		"%d reconciles, %d Updates after %s/%s changed %v", c.Reconciles.Load()-r0, c.Updates.Load()-u0, other, scName, err)

	// a Server change: a real difference, exactly one Update
	u0 = c.Updates.Load()
	if err := s.Apply(ctx, k8s.NewServer(ns, server, scName, 2, nil)); err != nil {
		return err
	}
	err = util.Poll(15*time.Second, func() error {
		sts, err := s.CP.GetSTS(ctx, ns, server)
		if err != nil {
			return err
		}
		if replicasOf(sts.Spec.Replicas) != 2 {
			return fmt.Errorf("replicas %d", replicasOf(sts.Spec.Replicas))
		}
		return nil
	})
	if _, serr := s.settledRV(ctx, ns, server); serr != nil {
		return serr
	}
	s.r.Check("sync-standin/server-change-one-update", err == nil && c.Updates.Load()-u0 == 1 && strings.Contains(c.LastPatch(ns, server), "replicas"),
		"%d Updates, objectmatcher patch %s %v", c.Updates.Load()-u0, c.LastPatch(ns, server), err)

	// cleanup: the Server (its StatefulSet goes with it)
	if err := s.deleteServer(ctx, ns, server); err != nil {
		return err
	}
	return nil
}

// scenarioSyncPlaceholder: no ServerConfig of the name in seldon-system; the
// team applies ServerConfig + Server; the sync loop creates the placeholder,
// the stand-in controller builds the StatefulSet, the webhook applies the
// team's images; deleting the team's objects removes the placeholder.
func scenarioSyncPlaceholder(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	const ns, scName, server = "sync-team-p", "sync-p-config", "mlserver"
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	if ph, err := s.getSC(ctx, k8s.ControllerNS, scName); err != nil || ph != nil {
		return fmt.Errorf("precondition: %s/%s must not exist (%v)", k8s.ControllerNS, scName, err)
	}
	c, err := s.StartStandInController(ctx, ns)
	if err != nil {
		return err
	}
	defer c.Stop()
	t0 := time.Now()
	if err := s.Apply(ctx, s.teamConfig(ns, scName), k8s.NewServer(ns, server, scName, 1, nil)); err != nil {
		return err
	}
	ph, took, err := s.waitSC(ctx, k8s.ControllerNS, scName, true, 30*time.Second)
	if !s.r.Check("sync-placeholder/created", err == nil, "%s/%s after %s %v", k8s.ControllerNS, scName, secs(took), err) {
		return nil
	}
	ok, detail := placeholderFacts(ph)
	s.r.Check("sync-placeholder/shape", ok, "%s", detail)

	team := s.teamImages(ns, "mlserver", scName)
	took, imgs, err := s.waitImages(ctx, ns, server, team, 60*time.Second)
	s.r.Check("sync-placeholder/standin-builds-webhook-fixes", err == nil && c.Creates.Load() == 1,
		"StatefulSet with the team's images %s after the apply: %s; stand-in: %d not-found reconciles before the placeholder, %d creates %v",
		secs(time.Since(t0)), imgs, c.NotFound.Load(), c.Creates.Load(), err)
	_ = took
	if sts, err := s.CP.GetSTS(ctx, ns, server); err == nil {
		s.r.Check("sync-placeholder/source-annotation", sts.Annotations[syncSourceAnn] == ns+"/"+scName, "%v", k8s.WebhookAnnotations(sts.ObjectMeta))
	}
	pods, err := s.CP.WaitPods(ctx, ns, server, 1, 60*time.Second)
	podsOK := err == nil
	for _, p := range pods {
		podsOK = podsOK && k8s.SameImages(k8s.TemplateImages(p.Spec), team)
	}
	s.r.Check("sync-placeholder/pods-team-images", podsOK, "%d pods %v", len(pods), err)
	msg, err := s.waitServerEvent(ctx, ns, server, "PlaceholderCreated", 15*time.Second)
	s.r.Check("sync-placeholder/event-PlaceholderCreated", err == nil, "%q %v", msg, err)

	// the team removes its Server and ServerConfig: the placeholder goes
	if err := s.deleteServer(ctx, ns, server); err != nil {
		return err
	}
	if err := s.deleteSC(ctx, ns, scName); err != nil {
		return err
	}
	_, took, err = s.waitSC(ctx, k8s.ControllerNS, scName, false, 60*time.Second)
	s.r.Check("sync-placeholder/deleted-when-unused", err == nil, "gone %s after the team's ServerConfig was deleted %v", secs(took), err)
	return nil
}

// scenarioSyncSharedUntouched: a real shared ServerConfig in seldon-system
// (no managed-by label) is never modified or deleted by the sync loop, even
// when application namespaces use its name and then stop using it.
func scenarioSyncSharedUntouched(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	const nsA, nsB, scName, server = "sync-shared-a", "sync-shared-b", "sync-shared", "mlserver"
	for _, n := range []string{nsA, nsB} {
		if err := s.CP.EnsureNamespace(ctx, n); err != nil {
			return err
		}
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", scName, k8s.FormPlatform)); err != nil {
		return err
	}
	defer func() { _ = s.deleteSC(ctx, k8s.ControllerNS, scName) }()
	shared0, err := s.getSC(ctx, k8s.ControllerNS, scName)
	if err != nil || shared0 == nil {
		return fmt.Errorf("shared config: %v", err)
	}
	c, err := s.StartStandInController(ctx, nsA)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := s.Apply(ctx, s.teamConfig(nsA, scName), k8s.NewServer(nsA, server, scName, 1, nil), s.teamConfig(nsB, scName)); err != nil {
		return err
	}
	_, imgs, err := s.waitImages(ctx, nsA, server, s.teamImages(nsA, "mlserver", scName), 60*time.Second)
	s.r.Check("sync-shared/team-images-over-shared", err == nil, "%s %v", imgs, err)
	// the sync loop has reconciled the workload (it reports what the webhook applied)
	msg, err := s.waitServerEvent(ctx, nsA, server, "InjectedServerConfig", 15*time.Second)
	s.r.Check("sync-shared/sync-loop-ran", err == nil, "%q %v", msg, err)
	time.Sleep(3 * time.Second)
	after, err := s.getSC(ctx, k8s.ControllerNS, scName)
	same := err == nil && after != nil && after.GetResourceVersion() == shared0.GetResourceVersion() &&
		after.GetLabels()[syncManagedByLabel] == "" && after.GetAnnotations()[syncUsedByAnn] == "" &&
		k8s.SameImages(k8s.ExpectedImages(after), s.PlatformImages("mlserver"))
	s.r.Check("sync-shared/untouched-while-used", same, "resourceVersion %s -> %s %v", shared0.GetResourceVersion(), rvOfU(after), err)

	// nobody uses the name any more: still never deleted
	for _, d := range []func() error{
		func() error { return s.deleteServer(ctx, nsA, server) },
		func() error { return s.deleteSC(ctx, nsA, scName) },
		func() error { return s.deleteSC(ctx, nsB, scName) },
	} {
		if err := d(); err != nil {
			return err
		}
	}
	time.Sleep(5 * time.Second)
	after, err = s.getSC(ctx, k8s.ControllerNS, scName)
	s.r.Check("sync-shared/untouched-when-unused", err == nil && after != nil && after.GetResourceVersion() == shared0.GetResourceVersion(),
		"resourceVersion %s -> %s %v", shared0.GetResourceVersion(), rvOfU(after), err)
	return nil
}

func rvOfU(u *unstructured.Unstructured) string {
	if u == nil {
		return "<deleted>"
	}
	return u.GetResourceVersion()
}
