package scenarios

import (
	"context"
	"strings"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
)

// scenarioPattern1: the seed's Test Case 2 with the webhook, in both forms
// of the controller-namespace ServerConfig. The stored StatefulSet carries
// the team's images, so do the Pods kube-controller-manager creates, and no
// FailedCreate event says "image: Required value". Leaves the
// platform-images form in place for the scenarios after it.
func scenarioPattern1(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	for _, form := range []k8s.ServerConfigForm{k8s.FormEmpty, k8s.FormPlatform} {
		if err := s.applyPattern1(ctx, form); err != nil {
			return err
		}
		for _, ns := range appNamespaces {
			if err := s.CP.DeleteSTS(ctx, ns, p1Server); err != nil {
				return err
			}
		}
		for _, ns := range appNamespaces {
			name := checkName("pattern1", form, ns)
			team := s.teamImages(ns, "mlserver", p1ServerConfig)
			_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
			if !s.r.Check(name+"/stored", err == nil, "%v", err) {
				continue
			}
			imgs := k8s.TemplateImages(stored.Spec.Template.Spec)
			s.r.Check(name+"/team-images-stored", k8s.SameImages(imgs, team), "stored %s; want %s", k8s.FmtImages(imgs), k8s.FmtImages(team))
			src := stored.Annotations["serverconfig-webhook/source"]
			s.r.Check(name+"/source-annotation", src == ns+"/"+p1ServerConfig, "serverconfig-webhook/source=%q", src)
			_, hasHash := stored.Annotations["serverconfig-webhook/hash"]
			s.r.Check(name+"/hash-annotation", hasHash, "serverconfig-webhook/hash present: %v", hasHash)

			pods, err := s.CP.WaitPods(ctx, ns, p1Server, 1, 60*time.Second)
			ok := err == nil && len(pods) > 0
			var got []string
			for _, p := range pods {
				ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), team)
				got = append(got, p.Name+": "+k8s.FmtImages(k8s.TemplateImages(p.Spec)))
			}
			s.r.Check(name+"/pods-team-images", ok, "%s %v", strings.Join(got, "; "), err)
			// give the StatefulSet controller a moment to report any failure
			time.Sleep(2 * time.Second)
			msgs, err := s.CP.FailedCreateEvents(ctx, ns, stored.UID)
			bad := []string{}
			for _, m := range msgs {
				if strings.Contains(m, "Required value") {
					bad = append(bad, m)
				}
			}
			s.r.Check(name+"/no-failedcreate", err == nil && len(bad) == 0, "%v %v", bad, err)
		}
	}
	return nil
}
