package scenarios

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioDeploymentsCreate: Seldon 2.10.2 with --use-deployments-for-servers
// (the stand-in controller in that mode) builds the Server's Deployment
// from the placeholder the sync loop keeps in seldon-system; the webhook
// admits it with the team's Deployment-mode ServerConfig: the stored
// template and the Pods have the team's images; the Server's
// deploymentStrategy is kept; nothing of StatefulSet mode is made.
func scenarioDeploymentsCreate(ctx context.Context, s *Suite) error {
	const sc = "deployments-create"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	c, err := s.startDepController(ctx)
	if err != nil {
		return err
	}
	defer c.Stop()
	team := k8s.ExpectedImages(s.depTeamConfig(depNS, depConfig))

	ph, err := s.getSC(ctx, k8s.ControllerNS, depConfig)
	okPH, detail := false, fmt.Sprint(err)
	if ph != nil {
		okPH, detail = placeholderFacts(ph)
	}
	s.r.Check(checkName(sc, "placeholder-by-sync-loop"), okPH, "%s/%s: %s", k8s.ControllerNS, depConfig, detail)

	d, err := s.getDeployment(ctx, depNS, depServer)
	if !s.r.Check(checkName(sc, "stored-team-images"), err == nil && k8s.SameImages(k8s.TemplateImages(d.Spec.Template.Spec), team) &&
		d.Annotations[syncSourceAnn] == depNS+"/"+depConfig, "%s", func() string {
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("stored template %s (team's %s), %s=%q", k8s.FmtImages(k8s.TemplateImages(d.Spec.Template.Spec)), k8s.FmtImages(team), syncSourceAnn, d.Annotations[syncSourceAnn])
	}()) {
		return nil
	}
	// the stand-in's own create: built from the placeholder (no
	// containers), mutated by the webhook
	evs, aerr := s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
		return e.UserAgent == standin.Mode2102Deployment.UserAgent() && e.Verb == "create" && e.ObjectRef.Resource == "deployments" &&
			e.ObjectRef.Namespace == depNS && e.ObjectRef.Name == depServer && e.ResponseStatus.Code == 201
	})
	sentContainers, mutated := -1, false
	if len(evs) == 1 {
		sentContainers = len(bodyPodSpec(evs[0].RequestObject).Containers)
		for k, v := range evs[0].Annotations {
			mutated = mutated || (strings.HasPrefix(k, "mutation.webhook.admission.k8s.io/") && strings.Contains(v, `"mutated":true`))
		}
	}
	s.r.Check(checkName(sc, "controller-create-through-webhook"), aerr == nil && len(evs) == 1 && sentContainers == 0 && mutated,
		"%d create(s) of deployments %s/%s by %s; the body had %d containers (the placeholder's), webhook mutated: %v %v",
		len(evs), depNS, depServer, standin.Mode2102Deployment.UserAgent(), sentContainers, mutated, aerr)

	s.r.Check(checkName(sc, "strategy-kept"), reflect.DeepEqual(d.Spec.Strategy, depStrategy),
		"spec.strategy %s (the Server's deploymentStrategy %s)", standin.Short(d.Spec.Strategy), standin.Short(depStrategy))

	_, serr := s.CP.GetSTS(ctx, depNS, depServer)
	svcs, lerr := s.CP.Kube.CoreV1().Services(depNS).List(ctx, metav1.ListOptions{LabelSelector: standin.ServerReplicaLabel + "=" + depServer})
	s.r.Check(checkName(sc, "no-statefulset-no-services"), apierrors.IsNotFound(serr) && lerr == nil && len(svcs.Items) == 0,
		"StatefulSet: %v; per-replica Services: %d %v", serr, func() int {
			if svcs == nil {
				return -1
			}
			return len(svcs.Items)
		}(), lerr)

	notReady := standin.WorkloadReadyReasons["Deployment"][1]
	cond, cerr := s.waitServerCondition(ctx, depNS, depServer, standin.Mode2102Deployment.ConditionType(), "False",
		func(c standin.ServerCondition) bool { return c.Reason == notReady }, 15*time.Second)
	s.r.Check(checkName(sc, "server-condition"), cerr == nil, "%s=%s reason %q (no kubelet: no replica gets ready) %v", cond.Type, cond.Status, cond.Reason, cerr)

	pods, ok, perr := s.CP.PodsWithImages(ctx, depNS, depServer, 1, team, 60*time.Second)
	s.r.Check(checkName(sc, "pods-team-images"), ok, "%d Pods (ReplicaSet of the Deployment) with the team's images %v", pods, perr)
	return nil
}

// scenarioDeploymentsScale: replicas 1 -> 2 on the Server: the stand-in
// (2.10.2, Deployment mode) sends one full Update built from the
// placeholder; the webhook fixes it again: replicas 2 stored, the template
// unchanged (team's images, no new ReplicaSet), Pods with the team's images.
func scenarioDeploymentsScale(ctx context.Context, s *Suite) error {
	const sc = "deployments-scale"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.startDepController(ctx)
	if err != nil {
		return err
	}
	defer c.Stop()
	team := k8s.ExpectedImages(s.depTeamConfig(depNS, depConfig))
	before, err := s.settledDeployment(ctx, depNS, depServer)
	if err != nil {
		return err
	}
	u0 := c.Updates.Load()
	t0 := time.Now()
	if err := s.Apply(ctx, k8s.NewServer(depNS, depServer, depConfig, 2, nil)); err != nil {
		return err
	}
	err = util.Poll(20*time.Second, func() error {
		d, err := s.getDeployment(ctx, depNS, depServer)
		if err != nil {
			return err
		}
		if replicasOf(d.Spec.Replicas) != 2 {
			return fmt.Errorf("replicas %d", replicasOf(d.Spec.Replicas))
		}
		return nil
	})
	after, serr := s.settledDeployment(ctx, depNS, depServer)
	if serr != nil {
		return serr
	}
	updates, _ := s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
		return e.UserAgent == standin.Mode2102Deployment.UserAgent() && e.Verb == "update" && e.ObjectRef.Resource == "deployments" &&
			e.ObjectRef.Subresource == "" && e.ObjectRef.Namespace == depNS && e.ObjectRef.Name == depServer
	})
	s.r.Check(checkName(sc, "one-full-update"), err == nil && c.Updates.Load()-u0 == 1 && len(updates) == 1 &&
		c.LastPatch(depNS, depServer) == `{"spec":{"replicas":2}}`,
		"%d Updates counted, %d in the audit log, objectmatcher patch %s %v", c.Updates.Load()-u0, len(updates), c.LastPatch(depNS, depServer), err)
	d := JSONDiff(before.Spec.Template, after.Spec.Template)
	s.r.Check(checkName(sc, "replicas-stored-template-unchanged"), replicasOf(after.Spec.Replicas) == 2 && d == "" &&
		k8s.SameImages(k8s.TemplateImages(after.Spec.Template.Spec), team) && after.Generation == before.Generation+1,
		"replicas %d, generation %d -> %d, images %s, template %s", replicasOf(after.Spec.Replicas), before.Generation, after.Generation,
		k8s.FmtImages(k8s.TemplateImages(after.Spec.Template.Spec)), func() string {
			if d == "" {
				return "unchanged"
			}
			return "changed: " + d
		}())
	pods, ok, perr := s.CP.PodsWithImages(ctx, depNS, depServer, 2, team, 60*time.Second)
	s.r.Check(checkName(sc, "pods-team-images"), ok, "%d Pods with the team's images %v", pods, perr)
	return nil
}

// scenarioDeploymentsRollout: a new image in the team's ServerConfig: the
// stock controller sends nothing (its desired object is the placeholder's);
// the sync loop re-admits the Deployment and the new image is stored
// within seconds (RolledOut Event); kube-controller-manager starts Pods
// with it.
func scenarioDeploymentsRollout(ctx context.Context, s *Suite) error {
	const sc = "deployments-rollout"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.startDepController(ctx)
	if err != nil {
		return err
	}
	defer c.Stop()
	before, err := s.settledDeployment(ctx, depNS, depServer)
	if err != nil {
		return err
	}
	u0 := c.Updates.Load()
	suffix := fmt.Sprintf("-d%d", time.Now().Unix()%100000)
	newCfg := deploymentModeConfig(s.teamConfigSuffix(depNS, depConfig, suffix))
	newImages := k8s.ExpectedImages(newCfg)
	t0 := time.Now()
	if err := s.Apply(ctx, newCfg); err != nil {
		return err
	}
	took, imgs, err := s.waitDeploymentImages(ctx, depNS, depServer, newImages, 30*time.Second)
	s.r.Check(checkName(sc, "new-image-within-seconds"), err == nil && took < 15*time.Second,
		"Deployment template has the new images %s after the ServerConfig change: %s %v; the stand-in controller sent %d Updates",
		secs(took), imgs, err, c.Updates.Load()-u0)
	util.Step("deployments-rollout: new image in the Deployment template after %s", secs(took))
	msg, err := s.waitServerEvent(ctx, depNS, depServer, "RolledOut", 10*time.Second)
	s.r.Check(checkName(sc, "event-RolledOut"), err == nil, "%q %v", msg, err)
	var withNew int
	err = util.Poll(60*time.Second, func() error {
		l, err := s.CP.Kube.CoreV1().Pods(depNS).List(ctx, metav1.ListOptions{LabelSelector: "seldon-server-name=" + depServer})
		if err != nil {
			return err
		}
		withNew = 0
		for _, p := range l.Items {
			if k8s.SameImages(k8s.TemplateImages(p.Spec), newImages) {
				withNew++
			}
		}
		if withNew == 0 {
			return fmt.Errorf("no Pod with the new images among %d", len(l.Items))
		}
		return nil
	})
	after, gerr := s.getDeployment(ctx, depNS, depServer)
	s.r.Check(checkName(sc, "pods-new-images"), err == nil && gerr == nil && after.Generation > before.Generation,
		"%d Pod(s) with the new images (a new ReplicaSet); generation %d -> %d %v %v", withNew, before.Generation, func() int64 {
			if after == nil {
				return -1
			}
			return after.Generation
		}(), err, gerr)
	util.Step("deployments-rollout: %s", secs(time.Since(t0)))
	return nil
}

// scenarioDeploymentsReleasedRefused: in Deployment mode the released
// mlserver ServerConfig cannot work: its containers mount mlserver-models,
// which only its claim template provides. The team's copy of it (team
// images) is applied as it is; the controller's create, fixed by the
// webhook, is refused by the API server (422), the webhook's admission
// warning names the mount, and the controller reports the refusal in the
// Server's condition.
func scenarioDeploymentsReleasedRefused(ctx context.Context, s *Suite) error {
	const sc, ns, scName, server = "deployments-released-config-refused", "dep-team-r", "dep-r-config", "mlserver"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	if err := s.Apply(ctx, s.teamConfig(ns, scName), k8s.NewServer(ns, server, scName, 1, nil)); err != nil {
		return err
	}
	defer func() {
		_ = s.deleteServer(context.Background(), ns, server)
		_ = s.deleteSC(context.Background(), ns, scName)
	}()
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, scName, true, 30*time.Second); err != nil {
		return fmt.Errorf("no placeholder %s/%s from the sync loop: %w", k8s.ControllerNS, scName, err)
	}
	si := s.NewStandIn(standin.Mode2102Deployment)
	var rerr error
	// the webhook's caches may not hold the team's objects yet: the
	// controller's retries, until the webhook's own answer comes back
	_ = util.Poll(20*time.Second, func() error {
		_, rerr = si.ReconcileServer(ctx, ns, server, false)
		if rerr != nil && strings.Contains(rerr.Error(), "volumeMounts") {
			return nil
		}
		return fmt.Errorf("%v", rerr)
	})
	const mount = `volumeMounts[0].name: Not found: "mlserver-models"`
	warn := si.Warnings.Matching("mlserver-models")
	warned := false
	for _, w := range warn {
		warned = warned || strings.Contains(w, "defines only as a volumeClaimTemplate")
	}
	_, gerr := s.getDeployment(ctx, ns, server)
	cond, _, cerr := s.ServerCondition(ctx, ns, server, standin.Mode2102Deployment.ConditionType())
	s.r.Check(sc, apierrors.IsInvalid(rerr) && strings.Contains(fmt.Sprint(rerr), mount) && warned && apierrors.IsNotFound(gerr) &&
		cerr == nil && cond.Status == "False" && strings.Contains(cond.Reason, mount),
		"the controller's create: %v; the webhook warned: %q; stored: %v; %s=%s reason %q %v",
		rerr, warn, gerr, cond.Type, cond.Status, cond.Reason, cerr)
	return nil
}
