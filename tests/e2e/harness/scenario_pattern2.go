package main

import (
	"context"
	"time"
)

// scenarioPattern2: the seed's Test Case 1, everything in seldon-system.
// The webhook is registered and running, and must leave the StatefulSet
// exactly as the controller sent it.
func scenarioPattern2(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.cp.EnsureNamespace(ctx, controllerNS); err != nil {
		return err
	}
	// the seed's shared mlserver-config: the real platform config
	const server = "mlserver"
	if err := s.apply(ctx,
		s.fx.ControllerNSConfig("mlserver", p1ServerConfig, FormPlatform),
		NewServer(controllerNS, server, p1ServerConfig, 1, nil),
	); err != nil {
		return err
	}
	sent, stored, err := s.standin.Reconcile(ctx, controllerNS, server)
	if !s.r.Check("pattern2/stored", err == nil, "%v", err) {
		return nil
	}
	wa := webhookAnnotations(stored.ObjectMeta)
	s.r.Check("pattern2/no-webhook-annotations", len(wa) == 0, "%v", wa)
	dry, err := s.cp.DryRunDefaulted(ctx, sent)
	if err != nil {
		return err
	}
	d := JSONDiff(stored.Spec.Template, dry.Spec.Template)
	s.r.Check("pattern2/template-as-sent", d == "", "stored vs sent (both defaulted by the API server): %s", d)
	d = JSONDiff(stored.Annotations, sent.Annotations) + JSONDiff(stored.Labels, sent.Labels)
	s.r.Check("pattern2/metadata-as-sent", d == "", "%s", d)
	pods, err := s.cp.WaitPods(ctx, controllerNS, server, 1, 60*time.Second)
	ok := err == nil
	for _, p := range pods {
		ok = ok && sameImages(templateImages(p.Spec), s.platformImages("mlserver"))
	}
	s.r.Check("pattern2/pods", ok, "%d pods with the shared config's images %v", len(pods), err)
	return nil
}
