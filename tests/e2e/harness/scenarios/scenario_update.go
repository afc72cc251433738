package scenarios

import (
	"context"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
)

// scenarioControllerUpdate: the Server's replicas change; the controller
// sends a full Update built from the wrong (controller-namespace)
// ServerConfig. The stored template must still be the team's, unchanged.
func scenarioControllerUpdate(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.ensurePattern1(ctx); err != nil {
		return err
	}
	ns := appNamespaces[0]
	team := s.teamImages(ns, "mlserver", p1ServerConfig)
	before, err := s.CP.GetSTS(ctx, ns, p1Server)
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, k8s.NewServer(ns, p1Server, p1ServerConfig, 2, nil)); err != nil {
		return err
	}
	sent, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
	if !s.r.Check("controller-update/accepted", err == nil, "%v", err) {
		return nil
	}
	s.r.Check("controller-update/update-carries-wrong-config", !k8s.SameImages(k8s.TemplateImages(sent.Spec.Template.Spec), team),
		"the stand-in controller sent %s", k8s.FmtImages(k8s.TemplateImages(sent.Spec.Template.Spec)))
	s.r.Check("controller-update/replicas", stored.Spec.Replicas != nil && *stored.Spec.Replicas == 2, "stored replicas %v", stored.Spec.Replicas)
	d := JSONDiff(before.Spec.Template, stored.Spec.Template)
	s.r.Check("controller-update/template-unchanged", d == "", "before vs after: %s", d)
	s.r.Check("controller-update/team-images", k8s.SameImages(k8s.TemplateImages(stored.Spec.Template.Spec), team), "%s", k8s.FmtImages(k8s.TemplateImages(stored.Spec.Template.Spec)))
	pods, err := s.CP.WaitPods(ctx, ns, p1Server, 2, 60*time.Second)
	ok := err == nil
	for _, p := range pods {
		ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), team)
	}
	s.r.Check("controller-update/pods", ok, "%d pods with the team's images %v", len(pods), err)
	return nil
}
