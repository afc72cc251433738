package scenarios

import (
	"context"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
)

// scenarioPattern2: the seed's Test Case 1, everything in seldon-system.
// The webhook is registered and running, and must leave the StatefulSet
// exactly as the controller sent it.
func scenarioPattern2(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, k8s.ControllerNS); err != nil {
		return err
	}
	// the seed's shared mlserver-config: the real platform config
	const server = "mlserver"
	if err := s.Apply(ctx,
		s.Fx.ControllerNSConfig("mlserver", p1ServerConfig, k8s.FormPlatform),
		k8s.NewServer(k8s.ControllerNS, server, p1ServerConfig, 1, nil),
	); err != nil {
		return err
	}
	sent, stored, err := s.StandIn.Reconcile(ctx, k8s.ControllerNS, server)
	if !s.r.Check("pattern2/stored", err == nil, "%v", err) {
		return nil
	}
	wa := k8s.WebhookAnnotations(stored.ObjectMeta)
	s.r.Check("pattern2/no-webhook-annotations", len(wa) == 0, "%v", wa)
	dry, err := s.CP.DryRunDefaulted(ctx, sent)
	if err != nil {
		return err
	}
	d := JSONDiff(stored.Spec.Template, dry.Spec.Template)
	s.r.Check("pattern2/template-as-sent", d == "", "stored vs sent (both defaulted by the API server): %s", d)
	d = JSONDiff(stored.Annotations, sent.Annotations) + JSONDiff(stored.Labels, sent.Labels)
	s.r.Check("pattern2/metadata-as-sent", d == "", "%s", d)
	pods, err := s.CP.WaitPods(ctx, k8s.ControllerNS, server, 1, 60*time.Second)
	ok := err == nil
	for _, p := range pods {
		ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), s.PlatformImages("mlserver"))
	}
	s.r.Check("pattern2/pods", ok, "%d pods with the shared config's images %v", len(pods), err)
	return nil
}
