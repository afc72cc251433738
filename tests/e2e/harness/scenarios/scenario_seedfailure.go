package scenarios

import (
	"context"
	"strings"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
)

// scenarioSeedFailure: "the test can fail". Without the webhook registered,
// the seed's Pattern 1 reproduces the seed's failure, in both forms:
//   - empty-images: up to 1.33 the StatefulSet is stored with empty images
//     and kube-controller-manager's Pod creates fail with
//     "image: Required value"; from 1.34 the create itself is rejected;
//   - platform-images: the StatefulSet silently carries the controller
//     namespace's images instead of the team's.
func scenarioSeedFailure(ctx context.Context, s *Suite) error {
	if err := s.CP.Unregister(ctx, s.MWC.GetName()); err != nil {
		return err
	}
	for _, form := range []k8s.ServerConfigForm{k8s.FormEmpty, k8s.FormPlatform} {
		if err := s.applyPattern1(ctx, form); err != nil {
			return err
		}
		for _, ns := range appNamespaces {
			name := checkName("seed-failure-without-webhook", form, ns)
			team := s.teamImages(ns, "mlserver", p1ServerConfig)
			_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
			switch {
			case form == k8s.FormEmpty && s.CP.Minor >= 34:
				s.r.Check(name+"/create-rejected", err != nil && strings.Contains(err.Error(), "Required value") && strings.Contains(err.Error(), "image"),
					"k8s 1.%d validates the template on create; got: %v", s.CP.Minor, err)
			case form == k8s.FormEmpty:
				if !s.r.Check(name+"/stored", err == nil, "create accepted on k8s 1.%d: %v", s.CP.Minor, err) {
					continue
				}
				imgs := k8s.TemplateImages(stored.Spec.Template.Spec)
				allEmpty := len(imgs) > 0
				for _, v := range imgs {
					allEmpty = allEmpty && v == ""
				}
				s.r.Check(name+"/empty-images-stored", allEmpty, "stored %s; team's %s", k8s.FmtImages(imgs), k8s.FmtImages(team))
				msg, err := s.CP.WaitFailedCreate(ctx, ns, stored.UID, 60*time.Second, "image: Required value")
				s.r.Check(name+"/pods-rejected", err == nil, "kube-controller-manager event: %s %v", msg, err)
			default: // FormPlatform
				if !s.r.Check(name+"/stored", err == nil, "%v", err) {
					continue
				}
				imgs := k8s.TemplateImages(stored.Spec.Template.Spec)
				s.r.Check(name+"/wrong-images-stored", k8s.SameImages(imgs, s.PlatformImages("mlserver")) && !k8s.SameImages(imgs, team),
					"stored %s; team's %s", k8s.FmtImages(imgs), k8s.FmtImages(team))
				pods, err := s.CP.WaitPods(ctx, ns, p1Server, 1, 60*time.Second)
				ok := err == nil
				for _, p := range pods {
					ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), s.PlatformImages("mlserver"))
				}
				s.r.Check(name+"/pods-run-wrong-images", ok, "%d pods created with the controller namespace's images %v", len(pods), err)
			}
			if err := s.CP.DeleteSTS(ctx, ns, p1Server); err != nil {
				return err
			}
		}
	}
	return nil
}
