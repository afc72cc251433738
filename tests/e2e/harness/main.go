// Command e2e is the end-to-end harness of serverconfig-webhook.
//
// It is driven by `cargo xtask e2e` and `cargo xtask demo` (xtask/src/e2e.rs),
// which build the peer binaries (etcd, kube-apiserver,
// kube-controller-manager, kubectl) and the webhook first and pass their paths here.
//
//	e2e run  [flags]   run the scenarios, print PASS/FAIL lines and
//	                   "e2e: N passed, M failed"; exit 1 on any failure
//	e2e demo [flags]   bring the control plane up, show the before/after
//	                   table and keep running until Ctrl-C
//	e2e bench [flags]  issue 6 benchmarks 3/4: concurrent StatefulSet creates
//	                   with the webhook, without it, and (1.36+) with a
//	                   MutatingAdmissionPolicy; JSON lines (bench/bench_e2e.go)
//	e2e soak [flags] -- [soak flags]
//	                   issue 20's soak: reviews at a fixed rate for minutes while
//	                   ServerConfigs change and the certificate rotates; RSS,
//	                   descriptors and threads sampled (bench/soak.go)
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"serverconfig-webhook/e2e/harness/bench"
	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/scenarios"
	"serverconfig-webhook/e2e/harness/util"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet("e2e "+cmd, flag.ExitOnError)
	var cfg controlplane.Config
	fs.StringVar(&cfg.PeerDir, "peer-dir", "", "folder holding kube-apiserver and kube-controller-manager")
	fs.StringVar(&cfg.Etcd, "etcd", "", "etcd binary")
	fs.StringVar(&cfg.Webhook, "webhook", "", "serverconfig-webhook binary")
	fs.StringVar(&cfg.Repo, "repo", ".", "repository root")
	fs.StringVar(&cfg.CRDs, "crds", "", "Seldon CRDs (default: <repo>/../shared/seldon-v2.9.1/crds.yaml)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "per-run folder (default: a new temp folder)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the per-run folder (logs, certs, kubeconfig)")
	fs.IntVar(&cfg.QuietSeconds, "quiet-seconds", 10, "length of the quiet steady state window")
	fs.StringVar(&cfg.Only, "run", "", "only scenarios whose name matches this regexp")
	fs.BoolVar(&cfg.Verbose, "v", false, "verbose progress")
	fs.DurationVar(&cfg.StartupWait, "startup-timeout", 120*time.Second, "how long each peer may take to become ready")
	fs.StringVar(&cfg.WebhookFlags, "webhook-flags", "shipped", "shipped: the flags of deploy/kustomize/deployment.yaml (addresses, cert paths replaced); minimal: only --controller-namespace")
	fs.StringVar(&cfg.CertManagerDir, "cert-manager-dir", "", "folder holding cert-manager-controller and cert-manager-cainjector")
	fs.StringVar(&cfg.CertManagerCRDs, "cert-manager-crds", "", "cert-manager's deploy/crds folder")
	fs.StringVar(&cfg.Helm, "helm", "", "helm binary")
	fs.StringVar(&cfg.Kustomize, "kustomize", "", "kustomize binary")
	fs.StringVar(&cfg.Kubectl, "kubectl", "", "kubectl binary (the kubectl plugin scenarios)")
	fs.StringVar(&cfg.Krew, "krew", "", "krew binary (the kubectl plugin's krew install)")
	fs.StringVar(&cfg.Kyverno, "kyverno", "", "bench: Kyverno's admission controller binary (adds the kyverno mode)")
	fs.StringVar(&cfg.KyvernoCRDs, "kyverno-crds", "", "bench: Kyverno's config/crds folder")
	fs.StringVar(&cfg.Otelcol, "otelcol", "", "the OpenTelemetry Collector of the traces scenarios (OTLP receiver, file exporter)")
	benchCfg := bench.Flags(fs) // bench/bench_e2e.go
	_ = fs.Parse(os.Args[2:])
	util.Verbose = cfg.Verbose

	if cfg.CRDs == "" {
		cfg.CRDs = filepath.Join(cfg.Repo, "..", "shared", "seldon-v2.9.1", "crds.yaml")
	}
	var code int
	switch cmd {
	case "run":
		code = scenarios.RunSuite(cfg)
	case "demo":
		code = scenarios.RunDemo(cfg)
	case "bench":
		code = bench.Run(cfg, benchCfg)
	case "bench-fixture":
		// its own flags follow "--" (bench/bench_fixture.go)
		code = bench.RunFixture(cfg, fs.Args())
	case "soak":
		// its own flags follow "--" (bench/soak.go)
		code = bench.RunSoak(cfg, fs.Args())
	default:
		usage()
		code = 2
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: e2e run|demo|bench|bench-fixture|soak [flags]  (normally started by `cargo xtask e2e` / `cargo xtask demo`)")
}
