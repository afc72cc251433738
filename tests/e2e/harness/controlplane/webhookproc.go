package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// Webhook runs the serverconfig-webhook binary as a local process on a fixed
// loopback port (so it can be stopped and started again at the same URL).
type Webhook struct {
	Bin         string
	Port        int
	MetricsPort int
	Cert        CertFiles
	CA          *CA
	Kubeconfig  string
	Identity    string // who the webhook is to the API server
	// User is the user name the API server authenticates the webhook as
	User string
	// ShippedArgs are the flags of the shipped Deployment minus the ones the
	// harness sets (addresses, certificate paths, log format, shutdown delay)
	ShippedArgs  []string
	PodNamespace string
	LogDir       string
	Namespace    string // the Seldon controller namespace
	// ProcName (log file name) and PodName (POD_NAME, the Lease identity)
	// of a second replica; empty: serverconfig-webhook / serverconfig-webhook-e2e
	ProcName, PodName string
	ExtraArgs         []string // appended after the shipped flags
	ExtraEnv          []string // added to the process's environment (NAME=value)
	// ShutdownDelay is --shutdown-delay; empty: 0s (stop at once)
	ShutdownDelay string
	// Proc is the running process; nil before Start
	Proc *util.Proc
}

func NewWebhook(cfg Config, cp *ControlPlane) (*Webhook, error) {
	pki := filepath.Join(cp.Dir, "pki")
	ca, err := NewCA(pki, "webhook-ca")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(pki, "webhook-serving", "serverconfig-webhook", nil, []string{"127.0.0.1", "localhost"})
	if err != nil {
		return nil, err
	}
	return &Webhook{
		Bin: cfg.Webhook, Port: util.MustFreePort(), MetricsPort: util.MustFreePort(), Cert: cert, CA: ca,
		PodNamespace: "serverconfig-webhook-system",
		Kubeconfig:   cp.WebhookKubeconfig, Identity: "admin (no RBAC shipped)", User: "e2e-admin", LogDir: filepath.Join(cp.Dir, "logs"), Namespace: "seldon-system",
	}, nil
}

// Available tells whether the webhook binary exists.
func (w *Webhook) Available() error {
	if w.Bin == "" {
		return fmt.Errorf("no webhook binary given")
	}
	if _, err := os.Stat(w.Bin); err != nil {
		return fmt.Errorf("webhook binary: %w", err)
	}
	return nil
}

func (w *Webhook) Start() error {
	if err := w.Available(); err != nil {
		return err
	}
	if w.Proc != nil {
		if done, _ := w.Proc.Exited(); !done {
			return nil
		}
	}
	args := []string{
		"serve",
		fmt.Sprintf("--listen-addr=127.0.0.1:%d", w.Port),
		"--tls-cert-file=" + w.Cert.Cert,
		"--tls-key-file=" + w.Cert.Key,
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", w.MetricsPort),
		"--log-format=json",
		// stop at once (the webhook-down scenario wants it gone) unless
		// ShutdownDelay says otherwise (the SIGTERM scenario)
		"--shutdown-delay=" + w.shutdownDelay(),
	}
	if len(w.ShippedArgs) > 0 {
		args = append(args, w.ShippedArgs...)
	} else {
		args = append(args, "--controller-namespace="+w.Namespace)
	}
	args = append(args, w.ExtraArgs...)
	procName, podName := "serverconfig-webhook", "serverconfig-webhook-e2e"
	if w.ProcName != "" {
		procName = w.ProcName
	}
	if w.PodName != "" {
		podName = w.PodName
	}
	util.Step("webhook: starting %s on 127.0.0.1:%d: %s", w.Bin, w.Port, strings.Join(args, " "))
	env := []string{
		"KUBECONFIG=" + w.Kubeconfig,
		// what the Deployment's downward API gives it (lease namespace, identity)
		"POD_NAMESPACE=" + w.PodNamespace,
		"POD_NAME=" + podName,
	}
	// SERVERCONFIG_E2E_RUST_LOG: the webhook's log filter, for debugging a run
	if f := os.Getenv("SERVERCONFIG_E2E_RUST_LOG"); f != "" {
		env = append(env, "RUST_LOG="+f)
	}
	env = append(env, w.ExtraEnv...)
	p, err := util.StartProc(procName, w.LogDir, w.Bin, args, env)
	if err != nil {
		return err
	}
	w.Proc = p
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.CA.CertPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return waitFor(60*time.Second, p, "webhook /readyz", func() error {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", w.Port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

func (w *Webhook) Stop() {
	if w.Proc != nil {
		util.Step("webhook: stopping")
		w.Proc.Stop(10 * time.Second)
		w.Proc = nil
	}
}

// Metrics returns the webhook's /metrics text (empty on error).
func (w *Webhook) Metrics() string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", w.MetricsPort))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(b)
}

// LogLines counts the lines of the running webhook's log that contain
// substr (-1 when it is not running or the log cannot be read).
func (w *Webhook) LogLines(substr string) int {
	if w.Proc == nil {
		return -1
	}
	b, err := os.ReadFile(w.Proc.Log)
	if err != nil {
		return -1
	}
	return strings.Count(string(b), substr)
}

// LoadShippedArgs reads the webhook container's args from the shipped
// Deployment (deploy/kustomize/deployment.yaml) and drops the ones the
// harness sets itself. Missing file: nil (the harness's minimal flags).
func LoadShippedArgs(repo string) ([]string, string, error) {
	path := filepath.Join(repo, DeployDir, "deployment.yaml")
	if _, err := os.Stat(path); err != nil {
		return nil, "", nil
	}
	objs, err := k8s.DecodeYAMLFile(path)
	if err != nil {
		return nil, "", err
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if len(cs) == 0 {
			continue
		}
		c := cs[0].(map[string]any)
		raw, _ := c["args"].([]any)
		var out []string
		for _, a := range raw {
			s, _ := a.(string)
			flag := strings.SplitN(s, "=", 2)[0]
			switch flag {
			case "--listen-addr", "--metrics-addr", "--tls-cert-file", "--tls-key-file", "--log-format", "--shutdown-delay":
				continue
			}
			out = append(out, s)
		}
		return out, o.GetNamespace(), nil
	}
	return nil, "", fmt.Errorf("%s: no Deployment", path)
}

func (w *Webhook) shutdownDelay() string {
	if w.ShutdownDelay == "" {
		return "0s"
	}
	return w.ShutdownDelay
}

// Replica is another webhook process like w (same binary, certificate,
// identity and flags) on new ports, with its own log file and POD_NAME;
// not started.
func (w *Webhook) Replica(procName, podName string) *Webhook {
	return &Webhook{
		Bin: w.Bin, Port: util.MustFreePort(), MetricsPort: util.MustFreePort(), Cert: w.Cert, CA: w.CA,
		Kubeconfig: w.Kubeconfig, Identity: w.Identity, User: w.User, ShippedArgs: w.ShippedArgs,
		PodNamespace: w.PodNamespace, LogDir: w.LogDir, Namespace: w.Namespace,
		ProcName: procName, PodName: podName,
	}
}

// Pid is the process id of the running webhook (0 when not running).
func (w *Webhook) Pid() int {
	if w.Proc == nil || w.Proc.Cmd.Process == nil {
		return 0
	}
	return w.Proc.Cmd.Process.Pid
}

// WithoutSync is a copy of the webhook (same port, certificate, identity)
// whose flags lack --sync: a webhook whose sync loop is not this release's.
func (w *Webhook) WithoutSync() *Webhook {
	c := *w
	c.Proc = nil
	c.ShippedArgs = withoutSyncArgs(w.ShippedArgs)
	return &c
}

// ReplicaWithoutSync is Replica with the shipped flags minus --sync (a
// replica that only serves admissions).
func (w *Webhook) ReplicaWithoutSync(procName, podName string) *Webhook {
	r := w.Replica(procName, podName)
	r.ShippedArgs = withoutSyncArgs(w.ShippedArgs)
	return r
}

func withoutSyncArgs(args []string) []string {
	var out []string
	for _, a := range args {
		if a != "--sync" && !strings.HasPrefix(a, "--sync=") {
			out = append(out, a)
		}
	}
	return out
}
