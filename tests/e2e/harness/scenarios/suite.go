package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// Suite holds what every scenario shares: one control plane, one webhook
// process, the registration from the deploy manifests, the stand-in
// controller and the report.
type Suite struct {
	Cfg     controlplane.Config        // the command line
	CP      *controlplane.ControlPlane // etcd, kube-apiserver, kube-controller-manager
	WH      *controlplane.Webhook      // the webhook process
	MWC     *unstructured.Unstructured // the registration from the deploy manifests
	StandIn *standin.StandIn           // the stand-in for the Seldon controller
	Fx      *k8s.Fixtures              // the Seldon objects the scenarios apply
	r       *util.Report
	only    *regexp.Regexp
}

// Scenario is one named group of checks.
type Scenario struct {
	Name string                                    // what --run matches
	Run  func(ctx context.Context, s *Suite) error // an error counts as a failure
}

// Setup starts the control plane, installs the CRDs, prepares the webhook
// (certificates, registration object) and the stand-in controller.
func Setup(cfg controlplane.Config) (*Suite, error) {
	dir := cfg.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "serverconfig-e2e-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if !cfg.Keep {
		util.AtExit(func() { os.RemoveAll(dir) })
	} else {
		util.AtExit(func() { fmt.Fprintf(os.Stderr, "kept %s (logs in %s/logs)\n", dir, dir) })
	}
	s := &Suite{Cfg: cfg, r: &util.Report{}}
	if cfg.Only != "" {
		re, err := regexp.Compile(cfg.Only)
		if err != nil {
			return nil, err
		}
		s.only = re
	}
	var err error
	if s.Fx, err = k8s.LoadFixtures(cfg.Repo); err != nil {
		return nil, err
	}
	if s.CP, err = controlplane.StartControlPlane(cfg, dir); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := s.CP.InstallCRDs(ctx, cfg.CRDs); err != nil {
		return nil, err
	}
	// every namespace a scenario uses, so that any subset (--run) works
	for _, ns := range append([]string{k8s.ControllerNS, equivNS, "tenant-a", "tenant-b"}, appNamespaces...) {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	if s.WH, err = controlplane.NewWebhook(cfg, s.CP); err != nil {
		return nil, err
	}
	// the webhook's flags: the shipped Deployment's (with --webhook-flags=shipped)
	if cfg.WebhookFlags == "shipped" {
		args, podNS, err := controlplane.LoadShippedArgs(cfg.Repo)
		if err != nil {
			return nil, err
		}
		s.WH.ShippedArgs = args
		if podNS != "" {
			s.WH.PodNamespace = podNS
		}
	}
	if err := s.CP.EnsureNamespace(ctx, s.WH.PodNamespace); err != nil {
		return nil, err
	}
	// the webhook's identity: the shipped RBAC, else admin
	saNS, saName, err := s.CP.ApplyShippedRBAC(ctx, cfg.Repo)
	if err != nil {
		return nil, err
	}
	if saName != "" {
		if s.WH.Kubeconfig, err = s.CP.ServiceAccountKubeconfig(saNS, saName); err != nil {
			return nil, err
		}
		s.WH.Identity = "ServiceAccount " + saNS + "/" + saName + " (shipped RBAC)"
		s.WH.User = "system:serviceaccount:" + saNS + ":" + saName
	}
	if s.MWC, err = controlplane.LoadRegistration(cfg.Repo, s.WH.Port, s.WH.CA.CertPEM); err != nil {
		return nil, err
	}
	s.StandIn = &standin.StandIn{CP: s.CP, ControllerNamespace: k8s.ControllerNS}
	return s, nil
}

// Run runs the scenarios in order; an error from one counts as a failure
// and the next one still runs.
func (s *Suite) Run(scenarios []Scenario) {
	for _, sc := range scenarios {
		if s.only != nil && !s.only.MatchString(sc.Name) {
			continue
		}
		util.Step("=== scenario %s", sc.Name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.r.Fail(sc.Name, fmt.Errorf("panic: %v", p))
				}
			}()
			if err := sc.Run(ctx, s); err != nil {
				s.r.Fail(sc.Name, err)
			}
		}()
		cancel()
	}
}

// needWebhook makes sure the webhook runs and is registered.
func (s *Suite) needWebhook(ctx context.Context) error {
	if err := s.WH.Start(); err != nil {
		return err
	}
	return s.CP.Register(ctx, s.MWC)
}

// Apply is Apply with the error wrapped for the report.
func (s *Suite) Apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	return s.CP.Apply(ctx, objs...)
}

// RunSuite is `e2e run`: set up, run every scenario --run selects, print
// the summary; the exit code is the process's.
func RunSuite(cfg controlplane.Config) int {
	util.HandleSignals()
	defer util.Teardown()
	s, err := Setup(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "setup failed: %v\n", err)
		r := &util.Report{}
		r.Fail("setup", err)
		return r.Summary()
	}
	s.r.Check("setup", true, "kube-apiserver %s, registration from %s, webhook runs as %s", s.CP.GitVersion, controlplane.RegistrationSource, s.WH.Identity)
	s.Run(AllScenarios())
	if s.r.Failed > 0 {
		// the per-run folder goes away on exit: show the webhook's log
		if p := filepath.Join(s.CP.Dir, "logs", "serverconfig-webhook.log"); fileExists(p) {
			b, _ := os.ReadFile(p)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			fmt.Fprintf(os.Stderr, "--- tail of the webhook log (%s) ---\n%s\n---\n", p, b)
		}
	}
	return s.r.Summary()
}

// AllScenarios in the order they run: the seed's failure first (no webhook
// registered), then with the webhook.
func AllScenarios() []Scenario {
	return append([]Scenario{
		{"seed-failure-without-webhook", scenarioSeedFailure},
		{"pattern2-untouched", scenarioPattern2},
		{"pattern1-seed-test-case-2", scenarioPattern1},
		{"controller-update", scenarioControllerUpdate},
		{"quiet-steady-state", scenarioQuiet},
		{"tenant-isolation", scenarioTenants},
		{"equivalence-with-render", scenarioEquivalence},
		{"oracle", scenarioOracle},
		{"webhook-down", scenarioWebhookDown},
		// the sync loop (serve --sync, as shipped), with the stand-in
		// controller running as a controller (standin_controller.go)
		{"sync-standin-controller", scenarioSyncStandIn},
		{"sync-placeholder-lifecycle", scenarioSyncPlaceholder},
		{"sync-shared-untouched", scenarioSyncSharedUntouched},
		{"sync-quiet-with-placeholder", scenarioSyncQuiet},
		{"sync-rollout", scenarioSyncRollout},
		{"sync-heal", scenarioSyncHeal},
		{"quiet-shared-name", scenarioQuietSharedName},
		{"upgrade-legacy-placeholders", scenarioUpgradeLegacyPlaceholders},
		{"honest-events", scenarioHonestEvents},
		{"audit-annotations", scenarioAuditAnnotations},
		{"shared-config-cost", scenarioSharedConfigCost},
		{"sync-doctor", scenarioSyncDoctor},
		{"sync-two-replicas", scenarioSyncReplicas},
		{"fault-lease-clock-skew", scenarioFaultLeaseClockSkew},
		// OpenTelemetry traces through a traced kube-apiserver and a real
		// collector (scenario_traces.go)
		{"traces-off-exports-nothing", scenarioTracesOff},
		{"traces-admission-child-of-apiserver", scenarioTracesAdmission},
		// faults on the real control plane (scenario_fault_*.go, issue 7)
		{"fault-cert-rotation", scenarioFaultCertRotation},
		{"fault-sigterm", scenarioFaultSIGTERM},
		{"fault-apiserver-restart", scenarioFaultAPIServer},
		{"fault-watch-stall", scenarioFaultWatchStall},
		// SIGKILL mid-write: nothing left half-done (scenario_fault_kill_*.go)
		{"fault-kill-mid-rollout", scenarioFaultKillMidRollout},
		{"fault-kill-mid-migrate", scenarioFaultKillMidMigrate},
		// the control plane's storage and flow control (issue 20)
		{"fault-etcd-restart", scenarioFaultEtcd},
		{"fault-apiserver-throttled", scenarioFaultThrottled},
		{"webhook-down-policies", scenarioWebhookDownPolicies},
		{"tenant-isolation-rbac", scenarioTenantRBAC},
		{"hostile-tenants", scenarioHostileTenants},
		// the stand-in calibrated against the real controller's trace, and
		// Seldon 2.10.2's Deployment mode (scenario_standin_calibration*.go,
		// scenario_deployments*.go)
		{"standin-calibration", scenarioStandInCalibration},
		{"deployments-create", scenarioDeploymentsCreate},
		{"deployments-scale", scenarioDeploymentsScale},
		{"deployments-rollout", scenarioDeploymentsRollout},
		{"deployments-quiet", scenarioDeploymentsQuiet},
		{"deployments-heal", scenarioDeploymentsHeal},
		{"deployments-released-config-refused", scenarioDeploymentsReleasedRefused},
		// `migrate` (scenario_migrate.go): the seed's Migration Paths A
		// and B with the built binary, their rollbacks, and the refusals
		{"migrate-a-to-controller-namespace", scenarioMigrateA},
		{"migrate-a-rollback", scenarioMigrateARollback},
		{"migrate-b-to-team-namespace", scenarioMigrateB},
		{"migrate-b-rollback", scenarioMigrateBRollback},
		// `kubectl serverconfig` through the real kubectl, and its krew
		// manifest installed by krew (scenario_kubectl_plugin.go)
		{"kubectl-plugin-doctor", scenarioKubectlPluginDoctor},
		{"kubectl-plugin-render", scenarioKubectlPluginRender},
		{"kubectl-plugin-migrate", scenarioKubectlPluginMigrate},
		{"kubectl-plugin-krew-install", scenarioKubectlPluginKrew},
	},
		// last: the shipped deploy artefacts on the real control plane
		// (scenario_deploy_*.go; they restore the harness's registration)
		append(faultBenchScenarios(), deployScenarios...)...)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
