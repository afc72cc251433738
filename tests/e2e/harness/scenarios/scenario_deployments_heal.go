package scenarios

import (
	"context"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioDeploymentsHeal: as sync-heal, for a Deployment. The registration
// removed and the webhook down (what failurePolicy: Ignore amounts to),
// the 2.10.2 controller (stand-in, Deployment mode) builds the Deployment
// from the platform's shared ServerConfig in seldon-system (a Deployment-mode
// copy of the released one: platform images, emptyDir for mlserver-models):
// the wrong images are stored. The registration back and the webhook (with
// --sync) started, its start-up pass re-admits the Deployment: the team's
// images, a Healed Event.
func scenarioDeploymentsHeal(ctx context.Context, s *Suite) error {
	const sc, ns, scName, server = "deployments-heal", "dep-team-h", "dep-h-config", "mlserver"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	platformCfg := deploymentModeConfig(s.Fx.ControllerNSConfig("mlserver", scName, k8s.FormPlatform))
	if err := s.Apply(ctx, platformCfg, s.depTeamConfig(ns, scName)); err != nil {
		return err
	}
	defer func() { _ = s.deleteSC(context.Background(), k8s.ControllerNS, scName) }()
	c, err := s.StartStandInControllerFor(ctx, s.depStandIn(ns, server), ns)
	if err != nil {
		return err
	}
	defer c.Stop()

	out, err := s.webhookOutage(ctx)
	if err != nil {
		return err
	}
	defer out.restore()
	if err := s.Apply(ctx, k8s.NewServer(ns, server, scName, 1, nil)); err != nil {
		return err
	}
	platform := k8s.ExpectedImages(platformCfg)
	_, imgs, err := s.waitDeploymentImages(ctx, ns, server, platform, 30*time.Second)
	d, gerr := s.getDeployment(ctx, ns, server)
	s.r.Check(checkName(sc, "bypassed-wrong-images"), err == nil && gerr == nil && d.Annotations[syncSourceAnn] == "",
		"stored without the webhook: %s %v %v", imgs, err, gerr)

	if err := s.CP.Register(ctx, s.MWC); err != nil {
		return err
	}
	t0 := time.Now()
	if err := s.WH.Start(); err != nil {
		return err
	}
	out.over()
	team := k8s.ExpectedImages(s.depTeamConfig(ns, scName))
	took, imgs, err := s.waitDeploymentImages(ctx, ns, server, team, 60*time.Second)
	healed, _ := s.getDeployment(ctx, ns, server)
	src := ""
	if healed != nil {
		src = healed.Annotations[syncSourceAnn]
	}
	s.r.Check(checkName(sc, "healed-at-start"), err == nil && src == ns+"/"+scName,
		"team images %s after the webhook (with --sync) started: %s, %s=%q %v", secs(took), imgs, syncSourceAnn, src, err)
	util.Step("deployments-heal: healed %s after the webhook process started", secs(time.Since(t0)))
	msg, err := s.waitServerEvent(ctx, ns, server, "Healed", 15*time.Second)
	s.r.Check(checkName(sc, "event-Healed"), err == nil, "%q %v", msg, err)
	if err := s.deleteServer(ctx, ns, server); err != nil {
		return err
	}
	return s.deleteSC(ctx, ns, scName)
}
