package main

import (
	"context"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// scenarioWebhookDown: with the shipped failurePolicy (Fail) and the
// webhook process stopped, the controller's create is refused and nothing
// is stored (so nothing runs a wrong image); an Update of an existing
// StatefulSet is refused too. Once the webhook is back, the controller's
// retry succeeds with the team's images.
func scenarioWebhookDown(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	ns := appNamespaces[1]
	const server = "mlserver-down"
	team := s.teamImages(ns, "mlserver", p1ServerConfig)
	// the seed's Pattern 1 StatefulSet exists (made here when run alone)
	if err := s.ensurePattern1(ctx); err != nil {
		return err
	}
	if err := s.apply(ctx, NewServer(ns, server, p1ServerConfig, 1, nil)); err != nil {
		return err
	}
	if _, err := s.settledRV(ctx, ns, p1Server); err != nil {
		return err
	}
	before, err := s.cp.GetSTS(ctx, ns, p1Server)
	if err != nil {
		return err
	}
	s.wh.Stop()

	_, _, err = s.standin.Reconcile(ctx, ns, server)
	s.r.Check("webhook-down/create-refused", err != nil && strings.Contains(err.Error(), "webhook"), "%v", err)
	_, gerr := s.cp.GetSTS(ctx, ns, server)
	s.r.Check("webhook-down/nothing-stored", apierrors.IsNotFound(gerr), "get: %v", gerr)
	_, _, err = s.standin.Reconcile(ctx, ns, p1Server)
	s.r.Check("webhook-down/update-refused", err != nil && strings.Contains(err.Error(), "webhook"), "%v", err)
	after, err := s.cp.GetSTS(ctx, ns, p1Server)
	if err != nil {
		return err
	}
	d := JSONDiff(before.Spec, after.Spec)
	s.r.Check("webhook-down/existing-untouched", d == "" && after.Generation == before.Generation &&
		sameImages(templateImages(after.Spec.Template.Spec), team), "generation %d -> %d %s", before.Generation, after.Generation, d)

	if err := s.wh.Start(); err != nil {
		return err
	}
	// the controller requeues with backoff; retry like it would
	var lastErr error
	err = poll(30*time.Second, func() error {
		_, _, lastErr = s.standin.Reconcile(ctx, ns, server)
		return lastErr
	})
	if !s.r.Check("webhook-down/retry-after-recovery", err == nil, "%v", err) {
		return nil
	}
	stored, err := s.cp.GetSTS(ctx, ns, server)
	if err != nil {
		return err
	}
	s.r.Check("webhook-down/recovered-team-images", sameImages(templateImages(stored.Spec.Template.Spec), team), "%s", fmtImages(templateImages(stored.Spec.Template.Spec)))
	pods, err := s.cp.WaitPods(ctx, ns, server, 1, 60*time.Second)
	ok := err == nil
	for _, p := range pods {
		ok = ok && sameImages(templateImages(p.Spec), team)
	}
	s.r.Check("webhook-down/recovered-pods", ok, "%d pods %v", len(pods), err)
	return nil
}
