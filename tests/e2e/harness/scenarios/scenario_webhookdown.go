package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
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
	if err := s.Apply(ctx, k8s.NewServer(ns, server, p1ServerConfig, 1, nil)); err != nil {
		return err
	}
	if _, err := s.settledRV(ctx, ns, p1Server); err != nil {
		return err
	}
	before, err := s.CP.GetSTS(ctx, ns, p1Server)
	if err != nil {
		return err
	}
	s.WH.Stop()

	_, _, err = s.StandIn.Reconcile(ctx, ns, server)
	s.r.Check("webhook-down/create-refused", err != nil && strings.Contains(err.Error(), "webhook"), "%v", err)
	_, gerr := s.CP.GetSTS(ctx, ns, server)
	s.r.Check("webhook-down/nothing-stored", apierrors.IsNotFound(gerr), "get: %v", gerr)
	_, _, err = s.StandIn.Reconcile(ctx, ns, p1Server)
	s.r.Check("webhook-down/update-refused", err != nil && strings.Contains(err.Error(), "webhook"), "%v", err)
	after, err := s.CP.GetSTS(ctx, ns, p1Server)
	if err != nil {
		return err
	}
	d := JSONDiff(before.Spec, after.Spec)
	s.r.Check("webhook-down/existing-untouched", d == "" && after.Generation == before.Generation &&
		k8s.SameImages(k8s.TemplateImages(after.Spec.Template.Spec), team), "generation %d -> %d %s", before.Generation, after.Generation, d)

	if err := s.WH.Start(); err != nil {
		return err
	}
	// the controller requeues with backoff; retry like it would
	var lastErr error
	err = util.Poll(30*time.Second, func() error {
		_, _, lastErr = s.StandIn.Reconcile(ctx, ns, server)
		return lastErr
	})
	if !s.r.Check("webhook-down/retry-after-recovery", err == nil, "%v", err) {
		return nil
	}
	stored, err := s.CP.GetSTS(ctx, ns, server)
	if err != nil {
		return err
	}
	s.r.Check("webhook-down/recovered-team-images", k8s.SameImages(k8s.TemplateImages(stored.Spec.Template.Spec), team), "%s", k8s.FmtImages(k8s.TemplateImages(stored.Spec.Template.Spec)))
	pods, err := s.CP.WaitPods(ctx, ns, server, 1, 60*time.Second)
	ok := err == nil
	for _, p := range pods {
		ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), team)
	}
	s.r.Check("webhook-down/recovered-pods", ok, "%d pods %v", len(pods), err)
	return nil
}

// scenarioWebhookDownPolicies: the webhook unreachable under each
// failurePolicy, with the stand-in controller running and the sync loop's
// placeholder (no images) as the controller namespace's ServerConfig (the
// shipped --on-missing=auto). A Server that already has its StatefulSet is
// left alone throughout. Two outages, one per policy:
//
//   - Fail (as shipped): the controller's create is refused, nothing is
//     stored, the controller retries with backoff and reports why (an Event
//     on the Server, where the stock controller sets StatefulSetReady=False);
//     once the webhook is back the retry stores the team's images and the
//     Pods are created with them.
//   - Ignore: the create is admitted unmutated, with the placeholder's
//     containers (none), so kube-controller-manager cannot create a Pod
//     (FailedCreate "spec.containers: Required value"): nothing runs a
//     wrong or empty image. Once
//     the webhook is back, the sync loop's start-up heal finds it lacks the
//     team ServerConfig's claim templates (immutable, so a re-admitted
//     template could never get a Pod) and deletes it (Recreated Event); the
//     controller creates it again through the webhook and the Pods are
//     created.
func scenarioWebhookDownPolicies(ctx context.Context, s *Suite) error {
	const sc = "webhook-down-policies"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	const ns, scName = "fault-down", "fd-config"
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	team := s.teamImages(ns, "mlserver", scName)
	if err := s.Apply(ctx, s.teamConfig(ns, scName)); err != nil {
		return err
	}
	ph, _, err := s.waitSC(ctx, k8s.ControllerNS, scName, true, 30*time.Second)
	if err != nil {
		return fmt.Errorf("no placeholder %s/%s from the sync loop: %w", k8s.ControllerNS, scName, err)
	}
	okPH, detail := placeholderFacts(ph)
	if !s.r.Check(checkName(sc, "placeholder"), okPH, "%s", detail) {
		return nil
	}
	c, err := s.StartStandInController(ctx, ns)
	if err != nil {
		return err
	}
	defer c.Stop()
	// a Server whose StatefulSet exists before the outages
	const existing, onFail, onIgnore = "fd-existing", "fd-fail", "fd-ignore"
	if err := s.Apply(ctx, k8s.NewServer(ns, existing, scName, 1, nil)); err != nil {
		return err
	}
	if _, imgs, err := s.waitImages(ctx, ns, existing, team, 30*time.Second); err != nil {
		return fmt.Errorf("%s before the outage: %s %w", existing, imgs, err)
	}
	before, err := s.CP.GetSTS(ctx, ns, existing)
	if err != nil {
		return err
	}
	restored := false
	defer func() {
		if !restored {
			_ = s.needWebhook(context.Background())
		}
	}()
	// nothing in ns runs a wrong or empty image; the existing StatefulSet
	// is as it was
	noWrong := func(phase string) {
		pods, err := s.CP.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		var wrong []string
		if err == nil {
			for _, p := range pods.Items {
				if !k8s.SameImages(k8s.TemplateImages(p.Spec), team) {
					wrong = append(wrong, p.Name+": "+k8s.FmtImages(k8s.TemplateImages(p.Spec)))
				}
			}
		}
		n := 0
		if pods != nil {
			n = len(pods.Items)
		}
		during, gerr := s.CP.GetSTS(ctx, ns, existing)
		s.r.Check(checkName(sc, phase, "no-wrong-image-existing-untouched"), err == nil && len(wrong) == 0 && gerr == nil &&
			during.Generation == before.Generation && k8s.SameImages(k8s.TemplateImages(during.Spec.Template.Spec), team),
			"%d Pods in %s, wrong: %v; %s generation %d -> %d %v %v", n, ns, wrong, existing, before.Generation,
			func() int64 {
				if during == nil {
					return -1
				}
				return during.Generation
			}(), err, gerr)
	}
	converged := func(phase string, servers ...string) {
		for _, server := range servers {
			took, imgs, err := s.waitImages(ctx, ns, server, team, 60*time.Second)
			pods, perr := s.CP.WaitPods(ctx, ns, server, 1, 30*time.Second)
			ok := err == nil && perr == nil
			for _, p := range pods {
				ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), team)
			}
			fc := ""
			if sts, gerr := s.CP.GetSTS(ctx, ns, server); gerr == nil && perr != nil {
				if msgs, _ := s.CP.FailedCreateEvents(ctx, ns, sts.UID); len(msgs) > 0 {
					fc = "; last FailedCreate: " + msgs[len(msgs)-1]
				}
			}
			s.r.Check(checkName(sc, phase, "converged", server), ok, "team images %s after the webhook came back (%s), %d Pods with them %v %v%s",
				secs(took), imgs, len(pods), err, perr, fc)
		}
	}

	// outage 1: failurePolicy Fail (the shipped registration)
	s.WH.Stop()
	if err := s.Apply(ctx, k8s.NewServer(ns, onFail, scName, 1, nil)); err != nil {
		return err
	}
	msg, err := s.waitServerEvent(ctx, ns, onFail, "StandInStatefulSetNotReady", 30*time.Second)
	s.r.Check(checkName(sc, "fail", "refused-and-reported"), err == nil && strings.Contains(msg, "webhook"),
		"Event on the Server: %q %v", msg, err)
	_, gerr := s.CP.GetSTS(ctx, ns, onFail)
	s.r.Check(checkName(sc, "fail", "nothing-stored"), apierrors.IsNotFound(gerr), "get %s/%s: %v", ns, onFail, gerr)
	noWrong("fail")
	if err := s.WH.Start(); err != nil {
		return err
	}
	converged("fail", onFail, existing)

	// outage 2: failurePolicy Ignore (the shipped registration with only that changed)
	ign := s.MWC.DeepCopy()
	hooks, _, _ := unstructured.NestedSlice(ign.Object, "webhooks")
	for i, h := range hooks {
		hm := h.(map[string]any)
		hm["failurePolicy"] = "Ignore"
		hooks[i] = hm
	}
	_ = unstructured.SetNestedSlice(ign.Object, hooks, "webhooks")
	if err := s.CP.Register(ctx, ign); err != nil {
		return err
	}
	s.WH.Stop()
	if err := s.Apply(ctx, k8s.NewServer(ns, onIgnore, scName, 1, nil)); err != nil {
		return err
	}
	// What the version under test does with the placeholder-built
	// StatefulSet (no containers) that nothing mutated: up to 1.33 the API
	// server stores it and kube-controller-manager's Pod creates are
	// refused; from 1.34 (kubernetes#131790) it validates the pod template
	// at create and refuses the StatefulSet itself. Either way nothing runs.
	var stsIgn *appsv1.StatefulSet
	if s.CP.Minor >= 34 {
		time.Sleep(5 * time.Second) // the stand-in has tried (and retries)
		_, gerr := s.CP.GetSTS(ctx, ns, onIgnore)
		desired, berr := s.StandIn.Build(ctx, ns, onIgnore)
		var cerr error
		if berr == nil {
			_, cerr = s.CP.Kube.AppsV1().StatefulSets(ns).Create(ctx, desired, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		}
		s.r.Check(checkName(sc, "ignore", "refused-at-create"), apierrors.IsNotFound(gerr) && apierrors.IsInvalid(cerr) &&
			strings.Contains(fmt.Sprint(cerr), "spec.template.spec.containers: Required value"),
			"Kubernetes 1.%d: nothing stored (%v); the controller's create is refused: %v %v", s.CP.Minor, gerr, cerr, berr)
	} else {
		err = util.Poll(30*time.Second, func() error {
			var err error
			stsIgn, err = s.CP.GetSTS(ctx, ns, onIgnore)
			return err
		})
		if !s.r.Check(checkName(sc, "ignore", "admitted-unmutated"), err == nil && stsIgn.Annotations[syncSourceAnn] == "",
			"Kubernetes 1.%d: stored without the webhook (no %s annotation): %v", s.CP.Minor, syncSourceAnn, func() string {
				if stsIgn == nil {
					return fmt.Sprint(err)
				}
				return k8s.FmtImages(k8s.TemplateImages(stsIgn.Spec.Template.Spec))
			}()) {
			return nil
		}
		fc, err := s.CP.WaitFailedCreate(ctx, ns, stsIgn.UID, 60*time.Second, "spec.containers", "Required value")
		s.r.Check(checkName(sc, "ignore", "no-pod-with-empty-image"), err == nil, "kube-controller-manager: %q %v", fc, err)
	}
	noWrong("ignore")
	t0 := time.Now()
	if err := s.needWebhook(ctx); err != nil { // the shipped registration back, then the webhook
		return err
	}
	restored = true
	converged("ignore", onIgnore, onFail, existing)
	util.Step("%s: converged %s after the webhook came back", sc, secs(time.Since(t0)))
	if stsIgn != nil { // stored without the webhook: the heal recreates it
		hmsg, err := s.waitServerEvent(ctx, ns, onIgnore, "Recreated", 30*time.Second)
		s.r.Check(checkName(sc, "ignore", "recreated-event"), err == nil, "%q %v", hmsg, err)
	}
	// nothing lost afterwards: the controller's next full Update (a scale
	// of the Server) goes through
	if err := s.Apply(ctx, k8s.NewServer(ns, existing, scName, 2, nil)); err != nil {
		return err
	}
	var replicas int32
	err = util.Poll(30*time.Second, func() error {
		sts, err := s.CP.GetSTS(ctx, ns, existing)
		if err != nil {
			return err
		}
		if replicas = ptrDeref(sts.Spec.Replicas); replicas != 2 {
			return fmt.Errorf("replicas %d", replicas)
		}
		return nil
	})
	why := ""
	if err != nil {
		if evs, _ := s.ServerEvents(ctx, ns, existing, "StandInStatefulSetNotReady"); len(evs) > 0 {
			why = "; controller: " + evs[len(evs)-1].Message
		}
	}
	s.r.Check(checkName(sc, "scale-after-recovery"), err == nil, "%s/%s scaled to 2: replicas %d %v%s", ns, existing, replicas, err, why)
	for _, server := range []string{onFail, onIgnore, existing} {
		if err := s.deleteServer(ctx, ns, server); err != nil {
			return err
		}
	}
	return s.deleteSC(ctx, ns, scName)
}

func ptrDeref(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}
