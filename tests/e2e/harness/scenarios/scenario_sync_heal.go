package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioSyncHeal: the registration removed and the webhook down (what
// failurePolicy: Ignore amounts to), the stand-in controller builds the
// StatefulSet from the platform's shared ServerConfig (wrong images). The
// registration comes back and the webhook process starts: the sync loop's
// start-up pass re-admits the StatefulSet (team images, Healed Event).
func scenarioSyncHeal(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	const ns, scName, server = "sync-team-h", "sync-h-config", "mlserver"
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", scName, k8s.FormPlatform), s.teamConfig(ns, scName)); err != nil {
		return err
	}
	defer func() { _ = s.deleteSC(ctx, k8s.ControllerNS, scName) }()
	c, err := s.StartStandInController(ctx, ns)
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
	platform := s.PlatformImages("mlserver")
	_, imgs, err := s.waitImages(ctx, ns, server, platform, 30*time.Second)
	sts, gerr := s.CP.GetSTS(ctx, ns, server)
	s.r.Check("sync-heal/bypassed-wrong-images", err == nil && gerr == nil && sts.Annotations[syncSourceAnn] == "",
		"stored without the webhook: %s %v %v", imgs, err, gerr)

	if err := s.CP.Register(ctx, s.MWC); err != nil {
		return err
	}
	t0 := time.Now()
	if err := s.WH.Start(); err != nil {
		return err
	}
	out.over()
	team := s.teamImages(ns, "mlserver", scName)
	took, imgs, err := s.waitImages(ctx, ns, server, team, 60*time.Second)
	s.r.Check("sync-heal/healed-at-start", err == nil, "team images %s after the webhook (with --sync) started: %s %v", secs(took), imgs, err)
	util.Step("sync-heal: healed %s after the webhook process started", secs(time.Since(t0)))
	msg, err := s.waitServerEvent(ctx, ns, server, "Healed", 15*time.Second)
	s.r.Check("sync-heal/event-Healed", err == nil, "%q %v", msg, err)
	if err := s.deleteServer(ctx, ns, server); err != nil {
		return err
	}
	return s.deleteSC(ctx, ns, scName)
}

// scenarioSyncReplicas: a second webhook process with --sync (same
// ServiceAccount, another POD_NAME): exactly one holds the Lease and reports
// serverconfig_webhook_sync_leader 1; SIGKILL the leader (no release): the
// other takes over within the lease duration and acts.
func scenarioSyncReplicas(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	w2 := &controlplane.Webhook{
		Bin: s.WH.Bin, Port: util.MustFreePort(), MetricsPort: util.MustFreePort(), Cert: s.WH.Cert, CA: s.WH.CA,
		Kubeconfig: s.WH.Kubeconfig, Identity: s.WH.Identity, ShippedArgs: s.WH.ShippedArgs,
		PodNamespace: s.WH.PodNamespace, LogDir: s.WH.LogDir, Namespace: s.WH.Namespace,
		ProcName: "serverconfig-webhook-2", PodName: "serverconfig-webhook-e2e-2",
	}
	if err := w2.Start(); err != nil {
		return err
	}
	defer w2.Stop()
	id := map[*controlplane.Webhook]string{s.WH: "serverconfig-webhook-e2e", w2: "serverconfig-webhook-e2e-2"}
	byID := map[string]*controlplane.Webhook{id[s.WH]: s.WH, id[w2]: w2}
	const gauge = "serverconfig_webhook_sync_leader"

	var holder string
	var g1, g2 float64
	err := util.Poll(20*time.Second, func() error {
		h, _, err := s.leaseHolder(ctx)
		if err != nil {
			return err
		}
		holder = h
		g1, g2 = metricValue(s.WH.Metrics(), gauge, ""), metricValue(w2.Metrics(), gauge, "")
		if byID[h] == nil || g1+g2 != 1 || (h == id[s.WH]) != (g1 == 1) {
			return fmt.Errorf("holder %q, %s %v / %v", h, gauge, g1, g2)
		}
		return nil
	})
	if !s.r.Check("sync-replicas/exactly-one-leader", err == nil, "Lease holder %q; %s: %s=%v, %s=%v %v", holder, gauge, id[s.WH], g1, id[w2], g2, err) {
		return nil
	}
	leader := byID[holder]
	other := w2
	if leader == w2 {
		other = s.WH
	}
	// hold the other for a while: it must stay a follower
	time.Sleep(3 * time.Second)
	h, _, _ := s.leaseHolder(ctx)
	s.r.Check("sync-replicas/follower-stays-follower", h == holder && metricValue(other.Metrics(), gauge, "") == 0,
		"holder %q, follower's %s %v", h, gauge, metricValue(other.Metrics(), gauge, ""))

	t0 := time.Now()
	util.Step("sync-replicas: SIGKILL the leader %s", holder)
	leader.Proc.Kill()
	leader.Proc = nil
	err = util.Poll(40*time.Second, func() error {
		h, _, err := s.leaseHolder(ctx)
		if err != nil {
			return err
		}
		if h != id[other] || metricValue(other.Metrics(), gauge, "") != 1 {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	took := time.Since(t0)
	s.r.Check("sync-replicas/takeover-within-lease", err == nil && took <= 22*time.Second,
		"%s took over %s after the SIGKILL (lease 15 s, retries every 3 s) %v", id[other], secs(took), err)
	util.Step("sync-replicas: takeover after %s", secs(took))

	// the new leader acts: a newly used name gets a placeholder
	const ns, scName = "sync-team-r", "sync-r-config"
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	before := metricValue(other.Metrics(), "serverconfig_webhook_sync_actions_total", `action="placeholder_create"`)
	if err := s.Apply(ctx, s.teamConfig(ns, scName)); err != nil {
		return err
	}
	ph, took, err := s.waitSC(ctx, k8s.ControllerNS, scName, true, 30*time.Second)
	after := metricValue(other.Metrics(), "serverconfig_webhook_sync_actions_total", `action="placeholder_create"`)
	s.r.Check("sync-replicas/new-leader-acts", err == nil && ph != nil && after > before && after >= 1,
		"placeholder %s/%s after %s; %s's placeholder_create %v -> %v %v", k8s.ControllerNS, scName, secs(took), id[other], before, after, err)

	// back to one replica (the suite's): start it again if it was killed,
	// stop w2 (SIGTERM releases the Lease)
	if leader == s.WH {
		if err := s.WH.Start(); err != nil {
			return err
		}
	}
	w2.Stop()
	err = util.Poll(30*time.Second, func() error {
		h, _, err := s.leaseHolder(ctx)
		if err != nil {
			return err
		}
		if h != id[s.WH] {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the suite's webhook did not take the Lease back: %w", err)
	}
	if err := s.deleteSC(ctx, ns, scName); err != nil {
		return err
	}
	_, took, err = s.waitSC(ctx, k8s.ControllerNS, scName, false, 30*time.Second)
	s.r.Check("sync-replicas/handed-back", err == nil, "the suite's replica leads again and removed the placeholder %s later %v", secs(took), err)
	return nil
}

// scenarioSyncDoctor: `doctor` exits 0 on a healthy setup and 1 with the
// reason on broken ones: a Server whose ServerConfig does not exist, no
// MutatingWebhookConfiguration, the Seldon controller Deployment with
// CLUSTERWIDE=false and WATCH_NAMESPACES set (the seed's trap).
func scenarioSyncDoctor(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	const ns, scName, server = "sync-doctor", "sync-d-config", "mlserver"
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	// the Seldon controller Deployment as released (it never runs: no
	// kubelet, replicas 0; doctor only reads its flags), clusterwide with
	// the namespace in its watch list. (The released default
	// WATCH_NAMESPACES='' is stored without a value and doctor then reads
	// the literal "$(WATCH_NAMESPACES)" as the watch list: see the step line.)
	released, err := s.controllerDeployment("true", "")
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, released); err != nil {
		return err
	}
	dep, err := s.controllerDeployment("true", ns)
	if err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, ns)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := s.Apply(ctx, s.teamConfig(ns, scName), k8s.NewServer(ns, server, scName, 1, nil)); err != nil {
		return err
	}
	if _, imgs, err := s.waitImages(ctx, ns, server, s.teamImages(ns, "mlserver", scName), 60*time.Second); err != nil {
		return fmt.Errorf("setup: %s %v", imgs, err)
	}
	if _, err := s.settledRV(ctx, ns, server); err != nil {
		return err
	}
	args := []string{"--watch-namespaces=" + ns}
	code, out := s.runDoctor(ctx, args...)
	util.Step("sync-doctor: CLUSTERWIDE=true, WATCH_NAMESPACES='' (released default): exit %d: %s", code, util.OneLine(out))
	if err := s.Apply(ctx, dep); err != nil {
		return err
	}
	// Pattern 1 needs Seldon's runtime in the namespace: the controller
	// dials seldon-scheduler.<namespace>:9004
	code, out = s.runDoctor(ctx, args...)
	s.r.Check("sync-doctor/no-scheduler-exit-1", code == 1 && strings.Contains(out, "no seldon-scheduler Service in "+ns),
		"exit %d: %s", code, util.OneLine(lineWith(out, "seldon-scheduler")))
	if err := s.ensureSchedulerService(ctx, ns); err != nil {
		return err
	}
	code, out = s.runDoctor(ctx, args...)
	if !s.r.Check("sync-doctor/healthy-exit-0", code == 0 && strings.Contains(out, "healthy"), "exit %d: %s", code, out) {
		s.dumpSyncInputs(ctx, ns, server, scName)
	}

	// a Server whose ServerConfig exists nowhere
	if err := s.Apply(ctx, k8s.NewServer(ns, "orphan", "sync-d-missing", 1, nil)); err != nil {
		return err
	}
	code, out = s.runDoctor(ctx, args...)
	s.r.Check("sync-doctor/missing-serverconfig-exit-1", code == 1 && strings.Contains(out, "sync-d-missing") && strings.Contains(out, "does not exist"), "exit %d: %s", code, out)
	if err := s.deleteServer(ctx, ns, "orphan"); err != nil {
		return err
	}

	// no registration
	if err := s.CP.Unregister(ctx, s.MWC.GetName()); err != nil {
		return err
	}
	code, out = s.runDoctor(ctx, args...)
	regErr := s.CP.Register(ctx, s.MWC)
	s.r.Check("sync-doctor/no-registration-exit-1", code == 1 && strings.Contains(out, "MutatingWebhookConfiguration not found"), "exit %d: %s", code, out)
	if regErr != nil {
		return regErr
	}

	// the seed's trap: a watch list with CLUSTERWIDE=false
	trap, err := s.controllerDeployment("false", ns)
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, trap); err != nil {
		return err
	}
	code, out = s.runDoctor(ctx, args...)
	s.r.Check("sync-doctor/clusterwide-false-trap-exit-1", code == 1 && strings.Contains(out, "IGNORED") && strings.Contains(out, "clusterwide=false"), "exit %d: %s", code, out)

	// fixed again: healthy
	if err := s.Apply(ctx, dep); err != nil {
		return err
	}
	code, out = s.runDoctor(ctx, append(args, "-o", "json")...)
	s.r.Check("sync-doctor/healthy-again-json", code == 0 && strings.Contains(out, `"environment"`), "exit %d: %s", code, out)
	if err := s.deleteServer(ctx, ns, server); err != nil {
		return err
	}
	return s.deleteSC(ctx, ns, scName)
}

// controllerDeployment is the released Seldon 2.9.1 controller Deployment
// (shared/seldon-v2.9.1/controller-deployment.yaml) in seldon-system with
// CLUSTERWIDE and WATCH_NAMESPACES set, and replicas 0.
func (s *Suite) controllerDeployment(clusterwide, watch string) (*unstructured.Unstructured, error) {
	path := filepath.Join(s.Cfg.Repo, "..", "shared", "seldon-v2.9.1", "controller-deployment.yaml")
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	objs, err := k8s.DecodeYAMLFile(path)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		o.SetNamespace(k8s.ControllerNS)
		_ = unstructured.SetNestedField(o.Object, int64(0), "spec", "replicas")
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for i, c := range cs {
			cm := c.(map[string]any)
			env, _ := cm["env"].([]any)
			for j, e := range env {
				em := e.(map[string]any)
				switch em["name"] {
				case "CLUSTERWIDE":
					em["value"] = clusterwide
				case "WATCH_NAMESPACES":
					em["value"] = watch
				}
				env[j] = em
			}
			cm["env"] = env
			cs[i] = cm
		}
		_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
		return o, nil
	}
	return nil, fmt.Errorf("%s: no Deployment", path)
}

// dumpSyncInputs writes the stored StatefulSet, the Server and both
// ServerConfigs as JSON into <work dir>/dump-<ns>/ (kept with --keep), so
// that `serverconfig-webhook render --patch` can be run on them.
func (s *Suite) dumpSyncInputs(ctx context.Context, ns, server, scName string) {
	dir := filepath.Join(s.CP.Dir, "dump-"+ns)
	_ = os.MkdirAll(dir, 0o755)
	write := func(name string, v any) {
		b, err := json.MarshalIndent(v, "", "  ")
		if err == nil {
			_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
	}
	if sts, err := s.CP.GetSTS(ctx, ns, server); err == nil {
		sts.APIVersion, sts.Kind = "apps/v1", "StatefulSet"
		write("statefulset.json", sts)
	}
	if u, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ns).Get(ctx, server, metav1.GetOptions{}); err == nil {
		write("server.json", u.Object)
	}
	if u, _ := s.getSC(ctx, ns, scName); u != nil {
		write("serverconfig.json", u.Object)
	}
	if u, _ := s.getSC(ctx, k8s.ControllerNS, scName); u != nil {
		write("controller-serverconfig.json", u.Object)
	}
	util.Step("sync: inputs dumped to %s", dir)
}
