package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The fixture of benchmark 2 (HTTPS server under load, benches/load):
//
//	e2e bench-fixture [harness flags] -- [-namespaces N] [-out FILE] [-flags shipped|minimal]
//
// starts etcd + kube-apiserver (+ kube-controller-manager), creates N
// namespaces bench-NNNN each holding 3 ServerConfigs (the real 2.9.1
// mlserver and triton, and a second mlserver) with the namespace's own
// images and 3 Servers using them, the same three names in the controller
// namespace with the released images, then starts `serverconfig-webhook
// serve` (its caches filled by its reflectors from this API server), writes
// BenchFixture as JSON to FILE and waits until SIGINT/SIGTERM.

// benchConfigs are the ServerConfig (and Server) names per namespace and
// the real fixture each is built from.
var benchConfigs = []struct{ Name, Base string }{
	{"mlserver", "mlserver"},
	{"triton", "triton"},
	{"mlserver-2", "mlserver"},
}

// BenchFixture is what the load benchmark reads.
type BenchFixture struct {
	URL        string `json:"url"`         // https://127.0.0.1:PORT of serve
	MetricsURL string `json:"metrics_url"` // http://127.0.0.1:PORT/metrics
	CA         string `json:"ca"`          // PEM file of the CA that signed Cert
	Cert       string `json:"cert"`        // serving certificate (for the baseline server)
	Key        string `json:"key"`
	PID        int    `json:"pid"` // serve's process id (VmHWM in /proc/PID/status)
	Kubeconfig string `json:"kubeconfig"`
	// ControllerNamespace holds the released ServerConfigs the stock
	// controller builds workloads from.
	ControllerNamespace string        `json:"controller_namespace"`
	Namespaces          int           `json:"namespaces"`
	Servers             []BenchServer `json:"servers"`
	ServeArgs           []string      `json:"serve_args"`
	SetupSeconds        float64       `json:"setup_seconds"`
}

// BenchServer is one Server the fixture created.
type BenchServer struct {
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	ServerConfig string `json:"server_config"`
	Base         string `json:"base"` // the real fixture (mlserver, triton)
	UID          string `json:"uid"`
}

// RunFixture is `e2e bench-fixture` (its own flags in args); the exit code
// is the process's.
func RunFixture(cfg controlplane.Config, args []string) int {
	fs := flag.NewFlagSet("e2e bench-fixture", flag.ExitOnError)
	n := fs.Int("namespaces", 1000, "application namespaces, each with 3 ServerConfigs and 3 Servers")
	out := fs.String("out", "", "write the fixture description (JSON) here (required)")
	flags := fs.String("flags", "minimal", "serve's flags: minimal (--controller-namespace, --on-missing=auto) or shipped (deploy/kustomize/deployment.yaml, incl. --sync)")
	_ = fs.Parse(args)
	if *out == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "bench-fixture: -out FILE is required and -namespaces must be >= 1")
		return 2
	}
	util.HandleSignals()
	defer util.Teardown()
	t0 := time.Now()
	fx, err := benchFixtureSetup(cfg, *n, *flags)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-fixture: %v\n", err)
		return 1
	}
	fx.SetupSeconds = time.Since(t0).Seconds()
	b, _ := json.MarshalIndent(fx, "", "  ")
	tmp := *out + ".partial"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench-fixture: %v\n", err)
		return 1
	}
	if err := os.Rename(tmp, *out); err != nil {
		fmt.Fprintf(os.Stderr, "bench-fixture: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "bench-fixture: ready in %.1fs: %d namespaces x %d ServerConfigs and Servers; serve pid %d at %s; wrote %s; stop with SIGTERM\n",
		fx.SetupSeconds, fx.Namespaces, len(benchConfigs), fx.PID, fx.URL, *out)
	// HandleSignals tears everything down and exits on SIGINT/SIGTERM/SIGHUP
	select {}
}

func benchFixtureSetup(cfg controlplane.Config, n int, flags string) (*BenchFixture, error) {
	dir := cfg.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "serverconfig-bench-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if !cfg.Keep {
		util.AtExit(func() { os.RemoveAll(dir) })
	}
	fixtures, err := k8s.LoadFixtures(cfg.Repo)
	if err != nil {
		return nil, err
	}
	cp, err := controlplane.StartControlPlane(cfg, dir)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := cp.InstallCRDs(ctx, cfg.CRDs); err != nil {
		return nil, err
	}
	wh, err := controlplane.NewWebhook(cfg, cp)
	if err != nil {
		return nil, err
	}
	wh.Namespace = k8s.ControllerNS
	if flags == "shipped" {
		args, podNS, err := controlplane.LoadShippedArgs(cfg.Repo)
		if err != nil {
			return nil, err
		}
		wh.ShippedArgs = args
		if podNS != "" {
			wh.PodNamespace = podNS
		}
	} else if flags == "minimal" {
		wh.ExtraArgs = []string{"--on-missing=auto"}
	} else {
		return nil, fmt.Errorf("-flags %q: want minimal or shipped", flags)
	}
	for _, ns := range []string{k8s.ControllerNS, wh.PodNamespace} {
		if err := cp.EnsureNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	servers, err := createBenchNamespaces(ctx, cp, fixtures, n)
	if err != nil {
		return nil, err
	}
	if err := wh.Start(); err != nil {
		return nil, err
	}
	args := []string{"serve"}
	if wh.Proc != nil {
		args = wh.Proc.Cmd.Args[1:]
	}
	return &BenchFixture{
		URL:                 fmt.Sprintf("https://127.0.0.1:%d", wh.Port),
		MetricsURL:          fmt.Sprintf("http://127.0.0.1:%d/metrics", wh.MetricsPort),
		CA:                  wh.CA.Path,
		Cert:                wh.Cert.Cert,
		Key:                 wh.Cert.Key,
		PID:                 wh.Proc.Cmd.Process.Pid,
		Kubeconfig:          filepath.Clean(wh.Kubeconfig),
		ControllerNamespace: k8s.ControllerNS,
		Namespaces:          n,
		Servers:             servers,
		ServeArgs:           args,
	}, nil
}

// createBenchNamespaces creates the fixture's objects: the released
// ServerConfigs of benchConfigs in the controller namespace, and n
// namespaces bench-NNNN each with 3 team ServerConfigs and 3 Servers
// (benchNamespace), 32 at a time; it returns the Servers in namespace order.
func createBenchNamespaces(ctx context.Context, cp *controlplane.ControlPlane, fixtures *k8s.Fixtures, n int) ([]BenchServer, error) {
	// a client that may go fast: thousands of creates
	fast := rest.CopyConfig(cp.Rest)
	fast.QPS, fast.Burst = 5000, 5000
	kube, err := kubernetes.NewForConfig(fast)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(fast)
	if err != nil {
		return nil, err
	}
	util.Step("bench-fixture: creating %d namespaces with %d ServerConfigs and Servers each", n, len(benchConfigs))
	for _, c := range benchConfigs {
		if err := createIgnoreExists(ctx, dyn, fixtures.ServerConfig(c.Base, c.Name, k8s.ControllerNS, "platform")); err != nil {
			return nil, err
		}
	}
	t := time.Now()
	servers := make([]BenchServer, n*len(benchConfigs))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := benchNamespace(ctx, kube, dyn, fixtures, i, servers[i*len(benchConfigs):(i+1)*len(benchConfigs)]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	util.Step("bench-fixture: %d objects created in %.1fs", n*(1+2*len(benchConfigs)), time.Since(t).Seconds())
	return servers, nil
}

// benchNamespace creates namespace bench-NNNN, its ServerConfigs and Servers.
func benchNamespace(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, fx *k8s.Fixtures, i int, out []BenchServer) error {
	ns := fmt.Sprintf("bench-%04d", i)
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	for k, c := range benchConfigs {
		if err := createIgnoreExists(ctx, dyn, fx.ServerConfig(c.Base, c.Name, ns, "team")); err != nil {
			return err
		}
		srv := k8s.NewServer(ns, c.Name, c.Name, 1, nil)
		created, err := dyn.Resource(k8s.GVRServer).Namespace(ns).Create(ctx, srv, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = dyn.Resource(k8s.GVRServer).Namespace(ns).Get(ctx, c.Name, metav1.GetOptions{})
		}
		if err != nil {
			return fmt.Errorf("Server %s/%s: %w", ns, c.Name, err)
		}
		out[k] = BenchServer{Namespace: ns, Name: c.Name, ServerConfig: c.Name, Base: c.Base, UID: string(created.GetUID())}
	}
	return nil
}

func createIgnoreExists(ctx context.Context, dyn dynamic.Interface, o *unstructured.Unstructured) error {
	_, err := dyn.Resource(k8s.GVRServerConfig).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ServerConfig %s/%s: %w", o.GetNamespace(), o.GetName(), err)
	}
	return nil
}
