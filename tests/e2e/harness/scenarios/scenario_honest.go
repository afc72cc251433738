package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioHonestEvents: an Event or metric that says a workload was fixed
// rests on the stored object read back. With the registration deleted, the
// sync loop's heal re-admits a workload the webhook never saw (the
// controller built it from a real shared ServerConfig of the name in the
// controller namespace, the platform's images): the API server takes the
// re-admission without calling the webhook, so the template read back
// still has the platform's images. No success Event (InjectedServerConfig,
// Healed, RolledOut) may appear; one WebhookNotApplied Warning, however
// often the heal retries; the metric counts it; doctor reports the
// workload. Once the registration is back, the heal succeeds and says so.
func scenarioHonestEvents(ctx context.Context, s *Suite) error {
	const sc, ns, name, server = "honest-events", "honest", "honest-shared", "hs"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	if err := s.ensureSchedulerService(ctx, ns); err != nil {
		return err
	}
	// the platform's shared config and the team's, both without claim
	// templates (so the heal is a re-admission, not a recreate)
	platform := deploymentModeConfig(s.Fx.ControllerNSConfig("mlserver", name, k8s.FormPlatform))
	team := deploymentModeConfig(s.teamConfig(ns, name))
	if err := s.Apply(ctx, platform, team); err != nil {
		return err
	}
	defer func() {
		_ = s.deleteSC(context.Background(), k8s.ControllerNS, name)
	}()
	notApplied0 := metricValue(s.WH.Metrics(), "serverconfig_webhook_sync_actions_total", `action="not_applied"`)
	if err := s.CP.Unregister(ctx, s.MWC.GetName()); err != nil {
		return err
	}
	registered := false
	defer func() {
		if !registered {
			_ = s.CP.Register(context.Background(), s.MWC)
		}
	}()
	if err := s.Apply(ctx, k8s.NewServer(ns, server, name, 1, nil)); err != nil {
		return err
	}
	if _, _, err := s.StandIn.Reconcile(ctx, ns, server); err != nil {
		return fmt.Errorf("the controller's write without the webhook: %w", err)
	}
	// the heal runs at once (the sync loop watches workloads) and retries
	// with backoff; wait through a few retries
	var warn []string
	_ = util.Poll(30*time.Second, func() error {
		evs, err := s.ServerEvents(ctx, ns, server, "WebhookNotApplied")
		if err != nil || len(evs) == 0 {
			return fmt.Errorf("no WebhookNotApplied yet %v", err)
		}
		warn = nil
		for _, e := range evs {
			warn = append(warn, e.Message)
		}
		return nil
	})
	time.Sleep(10 * time.Second)
	writes := 0
	evs, err := s.ServerEvents(ctx, ns, server, "WebhookNotApplied")
	for _, e := range evs {
		writes += eventOccurrences(e)
	}
	s.r.Check(checkName(sc, "one-warning"), err == nil && writes == 1 && len(warn) == 1 && strings.Contains(warn[0], "has image"),
		"WebhookNotApplied: %d Event(s), %d write(s): %q %v", len(evs), writes, warn, err)
	var lies []string
	for _, reason := range []string{"InjectedServerConfig", "Healed", "RolledOut", "Recreated"} {
		got, _ := s.ServerEvents(ctx, ns, server, reason)
		for _, e := range got {
			lies = append(lies, reason+": "+e.Message)
		}
	}
	s.r.Check(checkName(sc, "no-success-event"), len(lies) == 0, "success Events while the template still has the platform's images: %q", lies)
	notApplied := metricValue(s.WH.Metrics(), "serverconfig_webhook_sync_actions_total", `action="not_applied"`)
	s.r.Check(checkName(sc, "metric-counts-it"), notApplied > notApplied0 && notApplied > 0,
		"sync_actions_total{action=\"not_applied\"}: %.0f -> %.0f", notApplied0, notApplied)
	code, out := s.runDoctor(ctx, "--watch-namespaces="+ns)
	line := lineWith(out, ns+"/"+server)
	s.r.Check(checkName(sc, "doctor-reports-it"), code == 1 && strings.Contains(line, "fail") && strings.Contains(line, "never admitted"),
		"doctor (exit %d): %s", code, util.OneLine(line))

	// the registration back: the heal now succeeds, read back
	if err := s.CP.Register(ctx, s.MWC); err != nil {
		return err
	}
	registered = true
	_, imgs, err := s.waitImages(ctx, ns, server, s.teamImages(ns, "mlserver", name), 90*time.Second)
	msg, eerr := s.waitServerEvent(ctx, ns, server, "Healed", 30*time.Second)
	s.r.Check(checkName(sc, "healed-once-back"), err == nil && eerr == nil, "%s; Healed: %q %v %v", imgs, msg, err, eerr)
	_ = s.deleteServer(ctx, ns, server)
	return s.deleteSC(ctx, ns, name)
}
