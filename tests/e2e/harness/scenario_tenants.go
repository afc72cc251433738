package main

import (
	"context"
	"time"
)

// scenarioTenants: two namespaces with a ServerConfig of the same name (the
// released "mlserver") and different images; the controller namespace has
// the released one. Each StatefulSet gets its own namespace's images.
func scenarioTenants(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	tenants := []string{"tenant-a", "tenant-b"}
	if err := s.apply(ctx, s.fx.ControllerNSConfig("mlserver", "mlserver", FormPlatform)); err != nil {
		return err
	}
	for _, ns := range tenants {
		if err := s.cp.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
		if err := s.apply(ctx, s.fx.ServerConfig("mlserver", "mlserver", ns, "team"), NewServer(ns, "mlserver", "mlserver", 1, nil)); err != nil {
			return err
		}
	}
	for i, ns := range tenants {
		other := tenants[1-i]
		own, theirs := s.teamImages(ns, "mlserver", "mlserver"), s.teamImages(other, "mlserver", "mlserver")
		_, stored, err := s.standin.Reconcile(ctx, ns, "mlserver")
		if !s.r.Check(checkName("tenant-isolation", ns, "stored"), err == nil, "%v", err) {
			continue
		}
		imgs := templateImages(stored.Spec.Template.Spec)
		s.r.Check(checkName("tenant-isolation", ns, "own-images"), sameImages(imgs, own) && !sameImages(imgs, theirs),
			"stored %s; own %s", fmtImages(imgs), fmtImages(own))
		pods, err := s.cp.WaitPods(ctx, ns, "mlserver", 1, 60*time.Second)
		ok := err == nil
		for _, p := range pods {
			ok = ok && sameImages(templateImages(p.Spec), own)
		}
		s.r.Check(checkName("tenant-isolation", ns, "pods"), ok, "%d pods %v", len(pods), err)
	}
	return nil
}
