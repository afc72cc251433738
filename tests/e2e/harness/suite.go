package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Suite holds what every scenario shares: one control plane, one webhook
// process, the registration from the deploy manifests, the stand-in
// controller and the report.
type Suite struct {
	cfg     Config
	cp      *ControlPlane
	wh      *Webhook
	mwc     *unstructured.Unstructured
	standin *StandIn
	fx      *Fixtures
	r       *Report
	only    *regexp.Regexp
}

// Scenario is one named group of checks.
type Scenario struct {
	Name string
	Run  func(ctx context.Context, s *Suite) error
}

// Setup starts the control plane, installs the CRDs, prepares the webhook
// (certificates, registration object) and the stand-in controller.
func Setup(cfg Config) (*Suite, error) {
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
		AtExit(func() { os.RemoveAll(dir) })
	} else {
		AtExit(func() { fmt.Fprintf(os.Stderr, "kept %s (logs in %s/logs)\n", dir, dir) })
	}
	s := &Suite{cfg: cfg, r: &Report{}}
	if cfg.Only != "" {
		re, err := regexp.Compile(cfg.Only)
		if err != nil {
			return nil, err
		}
		s.only = re
	}
	var err error
	if s.fx, err = LoadFixtures(cfg.Repo); err != nil {
		return nil, err
	}
	if s.cp, err = StartControlPlane(cfg, dir); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := s.cp.InstallCRDs(ctx, cfg.CRDs); err != nil {
		return nil, err
	}
	// every namespace a scenario uses, so that any subset (--run) works
	for _, ns := range append([]string{controllerNS, equivNS, "tenant-a", "tenant-b"}, appNamespaces...) {
		if err := s.cp.EnsureNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	if s.wh, err = NewWebhook(cfg, s.cp); err != nil {
		return nil, err
	}
	// the webhook's flags: the shipped Deployment's (with --webhook-flags=shipped)
	if cfg.WebhookFlags == "shipped" {
		args, podNS, err := LoadShippedArgs(cfg.Repo)
		if err != nil {
			return nil, err
		}
		s.wh.ShippedArgs = args
		if podNS != "" {
			s.wh.PodNamespace = podNS
		}
	}
	if err := s.cp.EnsureNamespace(ctx, s.wh.PodNamespace); err != nil {
		return nil, err
	}
	// the webhook's identity: the shipped RBAC, else admin
	saNS, saName, err := s.cp.ApplyShippedRBAC(ctx, cfg.Repo)
	if err != nil {
		return nil, err
	}
	if saName != "" {
		if s.wh.Kubeconfig, err = s.cp.ServiceAccountKubeconfig(saNS, saName); err != nil {
			return nil, err
		}
		s.wh.Identity = "ServiceAccount " + saNS + "/" + saName + " (shipped RBAC)"
	}
	if s.mwc, err = LoadRegistration(cfg.Repo, s.wh.Port, s.wh.CA.CertPEM); err != nil {
		return nil, err
	}
	s.standin = &StandIn{cp: s.cp, ControllerNamespace: controllerNS}
	return s, nil
}

// Run runs the scenarios in order; an error from one counts as a failure
// and the next one still runs.
func (s *Suite) Run(scenarios []Scenario) {
	for _, sc := range scenarios {
		if s.only != nil && !s.only.MatchString(sc.Name) {
			continue
		}
		step("=== scenario %s", sc.Name)
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
	if err := s.wh.Start(); err != nil {
		return err
	}
	return s.cp.Register(ctx, s.mwc)
}

// apply is Apply with the error wrapped for the report.
func (s *Suite) apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	return s.cp.Apply(ctx, objs...)
}

func runSuite(cfg Config) int {
	HandleSignals()
	defer Teardown()
	s, err := Setup(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "setup failed: %v\n", err)
		r := &Report{}
		r.Fail("setup", err)
		return r.Summary()
	}
	s.r.Check("setup", true, "kube-apiserver %s, registration from %s, webhook runs as %s", s.cp.GitVersion, registrationSource, s.wh.Identity)
	s.Run(AllScenarios())
	if s.r.failed > 0 {
		// the per-run folder goes away on exit: show the webhook's log
		if p := filepath.Join(s.cp.Dir, "logs", "serverconfig-webhook.log"); fileExists(p) {
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
		{"shared-config-cost", scenarioSharedConfigCost},
		{"sync-doctor", scenarioSyncDoctor},
		{"sync-two-replicas", scenarioSyncReplicas},
		// faults on the real control plane (scenario_fault_*.go, issue 7)
		{"fault-cert-rotation", scenarioFaultCertRotation},
		{"fault-sigterm", scenarioFaultSIGTERM},
		{"fault-apiserver-restart", scenarioFaultAPIServer},
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
	},
		// last: the shipped deploy artefacts on the real control plane
		// (scenario_deploy_*.go; they restore the harness's registration)
		append(faultBenchScenarios(), deployScenarios...)...)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
