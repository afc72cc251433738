package controlplane

import (
	"time"
)

// Config is what the driver passes in on the command line.
type Config struct {
	PeerDir      string // holds kube-apiserver and kube-controller-manager
	Etcd         string // etcd binary
	Webhook      string // serverconfig-webhook binary
	Repo         string // repository root
	CRDs         string // Seldon CRDs (crds.yaml)
	WorkDir      string // per-run temp folder; empty: make one
	Keep         bool   // keep WorkDir after the run
	QuietSeconds int
	Only         string // regexp on scenario names
	Verbose      bool   // progress lines (util.Step) on stderr
	StartupWait  time.Duration
	WebhookFlags string // shipped | minimal
	// deploy scenarios (scenario_deploy_*.go); empty: those checks fail
	CertManagerDir  string // holds cert-manager-controller and cert-manager-cainjector
	CertManagerCRDs string // cert-manager's deploy/crds folder (from the Go module cache)
	Helm            string // helm binary (tests/deploy/lib.sh's cached build)
	Kustomize       string // kustomize binary (optional)
	// the kubectl plugin scenarios (scenario_kubectl_plugin.go); empty:
	// those checks fail
	Kubectl string // kubectl of the control plane's version (xtask peers)
	Krew    string // krew (tests/deploy/lib.sh's cached build)
	// the Kyverno comparison of `e2e bench` (bench/bench_e2e_kyverno.go);
	// empty: no kyverno mode
	Kyverno     string // Kyverno's admission controller (cmd/kyverno)
	KyvernoCRDs string // its CRDs: config/crds of the module (Go module cache)
	// the traces scenarios (scenario_traces.go); empty: they fail
	Otelcol string // the pinned OpenTelemetry Collector (OTLP receiver, file exporter)
}
