package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/scenarios"
	"serverconfig-webhook/e2e/harness/util"
)

// Benchmark 3 of issue 6 (`e2e bench`): N concurrent clients create
// StatefulSets owned by Servers through the real API server, with the
// webhook registered, with nothing registered, and (1.36+) with the
// MutatingAdmissionPolicy of tests/e2e/fixtures/mutating-admission-policy.yaml
// bound instead, and (with -kyverno, issue 18) with Kyverno's admission
// controller and its ClusterPolicy (bench_e2e_kyverno.go), in interleaved
// rounds of one run, for each -clients count in turn. It prints one JSON
// object per mode and client count. Benchmark 4 (requests the webhook makes to the API server on the
// hot path) is measured in the same run (bench_e2e_calls.go). A benchmark,
// not a test: nothing here is part of `e2e run`.

// BenchOpts are the flags of `e2e bench`.
type BenchOpts struct {
	Clients    string // concurrent clients: one count, or a comma-separated list run one after the other (e.g. 1,50)
	Creates    int    // creates per mode in each round
	Rounds     int    // rounds; each runs every mode once, in rotated order
	Warmup     int    // untimed creates per mode before the first round
	Namespaces int    // team namespaces the creates are spread over
	Modes      string // comma-separated subset of none,webhook,map; "" = all available
	Out        string // also write the JSON lines here
	Sync       bool   // keep the shipped --sync (the sync loop) in the webhook's flags
	// with -kyverno: after the rounds, Seldon's v2.9.1 reference cases
	// through the webhook and through the Kyverno policy (bench_oracle_kyverno.go)
	CompareOracle bool
}

// Flags registers the bench flags on the e2e command line (main.go).
func Flags(fs *flag.FlagSet) *BenchOpts {
	o := &BenchOpts{}
	fs.StringVar(&o.Clients, "clients", "50", "bench: concurrent clients, or a comma-separated list of counts each measured in turn (e.g. 1,50)")
	fs.IntVar(&o.Creates, "creates", 500, "bench: StatefulSet creates per mode in each round")
	fs.IntVar(&o.Rounds, "rounds", 6, "bench: rounds (each runs every mode once, order rotated)")
	fs.IntVar(&o.Warmup, "warmup", 100, "bench: untimed creates per mode before the first round")
	fs.IntVar(&o.Namespaces, "namespaces", 10, "bench: team namespaces (each with 3 ServerConfigs and 3 Servers)")
	fs.StringVar(&o.Modes, "modes", "", "bench: comma-separated subset of none,webhook,webhook-unchanged,map,map-jsonpatch,kyverno (default: all available; map* need 1.36+, kyverno needs -kyverno)")
	fs.StringVar(&o.Out, "out", "", "bench: also write the JSON lines to this file")
	fs.BoolVar(&o.Sync, "sync", false, "bench: keep --sync in the webhook's shipped flags (its sync loop heals every StatefulSet created without the webhook, i.e. the bench's none/map creates)")
	fs.BoolVar(&o.CompareOracle, "compare-oracle", true, "bench: with -kyverno, after the rounds run every ../shared/seldon-oracle/v2.9.1 case through the webhook and through the Kyverno policy and count those stored equal to Seldon's build")
	return o
}

const (
	modeNone    = "none"
	modeWebhook = "webhook"
	// the webhook registered, and the objects sent are already what it
	// makes of them: it answers without a patch (the cost of the call alone)
	modeWebhookNoop = "webhook-unchanged"
	modeMAP         = "map"           // the policy with an apply configuration
	modeMAPJSON     = "map-jsonpatch" // the same policy with a JSONPatch mutation
	benchLabel      = "serverconfig-bench"
	benchServer     = "mlserver"
	benchConfig     = "mlserver-config"
)

// bench is one run's state.
type bench struct {
	s       *scenarios.Suite
	o       *BenchOpts
	nss     []string
	desired map[string]*appsv1.StatefulSet // per namespace, as the stand-in sends it
	fixed   map[string]*appsv1.StatefulSet // per namespace, as the webhook made it (webhook-unchanged)
	client  kubernetes.Interface           // no client-side rate limit
	// per map mode: its MutatingAdmissionPolicy and binding
	policies map[string][]*unstructured.Unstructured
	calls    *callCounter
	// clients: the client counts measured in turn; clients: the current one
	clientCounts []int
	clients      int
	// kyverno mode (bench_e2e_kyverno.go): the running admission controller
	// and its ClusterPolicy; nil without -kyverno
	kyverno       *controlplane.Kyverno
	kyvernoPolicy *unstructured.Unstructured
	peakRSS       map[string]int64 // VmHWM at the end of the run, by process
}

// Run is `e2e bench`: the benchmark rounds on one control plane, JSON
// lines out; the exit code is the process's.
func Run(cfg controlplane.Config, o *BenchOpts) int {
	util.HandleSignals()
	defer util.Teardown()
	var clientCounts []int
	for _, c := range strings.Split(o.Clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -clients %q: want counts of at least 1, comma separated\n", o.Clients)
			return 2
		}
		clientCounts = append(clientCounts, n)
	}
	if o.Creates < 1 || o.Rounds < 1 || o.Namespaces < 1 {
		fmt.Fprintln(os.Stderr, "bench: -creates, -rounds and -namespaces must be at least 1")
		return 2
	}
	// the per-run folder is made here so that the API server's audit policy
	// (bench_e2e_calls.go) can be written before it starts
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "serverconfig-bench-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		cfg.WorkDir = d
	}
	auditLog, err := enableAudit(cfg.WorkDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	s, err := scenarios.Setup(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: setup failed: %v\n", err)
		return 1
	}
	b := &bench{s: s, o: o, calls: &callCounter{auditLog: auditLog}, clientCounts: clientCounts}
	ctx := context.Background()
	modes, err := b.prepare(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	var all []map[string]*modeResult
	for _, c := range clientCounts {
		b.clients = c
		results, err := b.run(ctx, modes)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		all = append(all, results)
	}
	// peak resident sets at the end of the run (all rounds, all client
	// counts), with the bench's namespaces' objects in the caches
	b.peakRSS = map[string]int64{"webhook": procHWM(b.s.WH.Proc)}
	if b.kyverno != nil {
		b.peakRSS["kyverno"] = procHWM(b.kyverno.Proc)
	}
	var extra []string
	if b.kyverno != nil && o.CompareOracle {
		line, err := b.oracleCompare(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: oracle comparison: %v\n", err)
			return 1
		}
		extra = append(extra, line)
	}
	return b.report(all, extra)
}

// prepare: team namespaces with their ServerConfig + Server, the controller
// namespace's same-named ServerConfig with the released (platform) images
// (so that creates succeed without any mutation), the webhook running with
// warm caches, kube-controller-manager stopped (no Pods: only the
// StatefulSet writes are measured).
func (b *bench) prepare(ctx context.Context) ([]string, error) {
	s := b.s
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", benchConfig, k8s.FormPlatform)); err != nil {
		return nil, err
	}
	b.desired = map[string]*appsv1.StatefulSet{}
	for i := 0; i < b.o.Namespaces; i++ {
		ns := fmt.Sprintf("bench-team-%02d", i)
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return nil, err
		}
		if err := s.Apply(ctx,
			s.Fx.ServerConfig("mlserver", benchConfig, ns, "team"),
			// two more ServerConfigs and Servers, as a team with several
			// kinds has (3 + 3 per namespace, the load fixture's shape):
			// they are in every admission controller's caches or reach,
			// and a policy must not pick them for the mlserver StatefulSet
			s.Fx.ServerConfig("triton", "triton-config", ns, "team"),
			s.Fx.ServerConfig("mlserver", benchConfig+"-gpu", ns, "team"),
			k8s.NewServer(ns, benchServer, benchConfig, 1, nil),
			k8s.NewServer(ns, "triton", "triton-config", 1, nil),
			k8s.NewServer(ns, benchServer+"-gpu", benchConfig+"-gpu", 1, nil),
		); err != nil {
			return nil, err
		}
		d, err := s.StandIn.Build(ctx, ns, benchServer)
		if err != nil {
			return nil, err
		}
		b.nss = append(b.nss, ns)
		b.desired[ns] = d
	}
	util.Step("bench: stopping kube-controller-manager (no Pods, only StatefulSet writes are measured)")
	s.CP.KCM.Stop(10 * time.Second)
	if !b.o.Sync {
		// admission only: the sync loop would re-admit (heal) every
		// StatefulSet the none and map rounds create, adding writes to
		// those rounds that a real cluster does not see
		var args []string
		for _, a := range s.WH.ShippedArgs {
			if a != "--sync" {
				args = append(args, a)
			}
		}
		s.WH.ShippedArgs = args
	}
	if err := s.WH.Start(); err != nil {
		return nil, err
	}
	rc := *s.CP.Rest
	rc.QPS, rc.Burst = -1, 0 // no client-side throttling
	rc.Timeout = 60 * time.Second
	var err error
	if b.client, err = kubernetes.NewForConfig(&rc); err != nil {
		return nil, err
	}
	modes := []string{modeNone, modeWebhook, modeWebhookNoop}
	if s.Cfg.Kyverno != "" {
		if err := b.startKyverno(ctx); err != nil {
			return nil, fmt.Errorf("kyverno: %w", err)
		}
		modes = append(modes, modeKyverno)
	}
	if s.CP.Minor >= 36 {
		modes = append(modes, modeMAP, modeMAPJSON)
	} else {
		util.Step("bench: kube-apiserver %s: MutatingAdmissionPolicy (admissionregistration.k8s.io/v1) needs 1.36+; map mode skipped", s.CP.GitVersion)
	}
	if b.o.Modes != "" {
		var want []string
		for _, m := range strings.Split(b.o.Modes, ",") {
			m = strings.TrimSpace(m)
			if !contains(modes, m) {
				return nil, fmt.Errorf("-modes: %q is not one of %s on %s", m, strings.Join(modes, ","), s.CP.GitVersion)
			}
			want = append(want, m)
		}
		modes = want
	}
	if s.CP.Minor >= 36 {
		if b.policies, err = loadPolicies(s.Cfg.Repo); err != nil {
			return nil, err
		}
	}
	return modes, nil
}

func contains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// run: warm-up, then the rounds; each round runs every mode once, the
// order rotated by one per round so that drift is spread over the modes.
func (b *bench) run(ctx context.Context, modes []string) (map[string]*modeResult, error) {
	res := map[string]*modeResult{}
	for _, m := range modes {
		res[m] = &modeResult{Mode: m}
	}
	if b.o.Warmup > 0 {
		for _, m := range modes {
			if err := b.switchTo(ctx, m); err != nil {
				return nil, err
			}
			if m == modeKyverno {
				// before timing anything: the policy does the job (the
				// seed's Pattern 1: the team's images stored), or stop
				res[m].Check = b.checkMAP(ctx, m)
				if !res[m].Check.OK {
					return nil, fmt.Errorf("kyverno: the ClusterPolicy does not give the team's images, nothing timed: %s", res[m].Check.Detail)
				}
			}
			if m == modeWebhookNoop {
				if err := b.makeFixed(ctx); err != nil {
					return nil, err
				}
			}
			util.Step("bench: warm-up %s (%d clients): %d creates", m, b.clients, b.o.Warmup)
			if _, err := b.round(ctx, m, "w", b.o.Warmup); err != nil {
				return nil, err
			}
			if err := b.cleanup(ctx); err != nil {
				return nil, err
			}
			if isMAP(m) {
				res[m].Check = b.checkMAP(ctx, m)
			}
		}
	}
	for r := 0; r < b.o.Rounds; r++ {
		for k := range modes {
			m := modes[(k+r)%len(modes)]
			if err := b.switchTo(ctx, m); err != nil {
				return nil, err
			}
			before := b.calls.snapshot(b.s, b.kyvernoProc())
			rr, err := b.round(ctx, m, fmt.Sprint(r), b.o.Creates)
			if err != nil {
				return nil, err
			}
			after := b.calls.snapshot(b.s, b.kyvernoProc())
			if err := b.cleanup(ctx); err != nil {
				return nil, err
			}
			res[m].add(rr, before, after)
			util.Step("bench: %2d clients round %d %-7s %4d creates in %5.2fs: %6.1f/s, p50 %6.1f ms, p99 %6.1f ms, errors %d",
				b.clients, r+1, m, rr.n, rr.wall.Seconds(), rr.perSecond(), ms(rr.quantile(0.50)), ms(rr.quantile(0.99)), rr.errors)
		}
	}
	// requests the webhook's identity made, per mode, from the audit log
	if err := b.calls.attribute(res); err != nil {
		return nil, err
	}
	return res, nil
}

// roundResult is one mode's measured creates of one round.
type roundResult struct {
	lat         []time.Duration
	n, errors   int
	firstErr    string
	start, end  time.Time
	wall        time.Duration
	mode, round string
}

// round runs n creates with o.Clients concurrent clients (cleanup deletes
// them afterwards, outside the measured window).
func (b *bench) round(ctx context.Context, mode, round string, n int) (*roundResult, error) {
	rr := &roundResult{mode: mode, round: round, lat: make([]time.Duration, 0, n)}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	rr.start = time.Now()
	for c := 0; c < b.clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				ns := b.nss[i%len(b.nss)]
				obj := b.desired[ns].DeepCopy()
				if mode == modeWebhookNoop {
					obj = b.fixed[ns].DeepCopy()
				}
				obj.Name = fmt.Sprintf("b%s-%s-c%d-%05d", round, mode, b.clients, i)
				obj.Labels[benchLabel] = "e2e"
				t := time.Now()
				_, err := b.client.AppsV1().StatefulSets(ns).Create(ctx, obj, metav1.CreateOptions{FieldManager: "manager"})
				d := time.Since(t)
				mu.Lock()
				if err != nil {
					rr.errors++
					if rr.firstErr == "" {
						rr.firstErr = err.Error()
					}
				} else {
					rr.lat = append(rr.lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rr.end = time.Now()
	rr.wall = rr.end.Sub(rr.start)
	rr.n = n
	if rr.errors > 0 {
		return rr, fmt.Errorf("%s round %s: %d of %d creates failed, first: %s", mode, round, rr.errors, n, rr.firstErr)
	}
	return rr, nil
}

// cleanup deletes every StatefulSet the bench created (none has Pods or
// finalizers: kube-controller-manager is stopped).
func (b *bench) cleanup(ctx context.Context) error {
	sel := metav1.ListOptions{LabelSelector: benchLabel + "=e2e"}
	for _, ns := range b.nss {
		if err := b.s.CP.Kube.AppsV1().StatefulSets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
			return fmt.Errorf("delete the bench StatefulSets in %s: %w", ns, err)
		}
	}
	return util.Poll(60*time.Second, func() error {
		for _, ns := range b.nss {
			l, err := b.s.CP.Kube.AppsV1().StatefulSets(ns).List(ctx, sel)
			if err != nil {
				return err
			}
			if len(l.Items) > 0 {
				return fmt.Errorf("%d bench StatefulSets left in %s", len(l.Items), ns)
			}
		}
		return nil
	})
}

// report prints one JSON line per mode (stdout and -out); exit 1 when the
// MAP check failed.
func (b *bench) report(all []map[string]*modeResult, extra []string) int {
	var lines []string
	code := 0
	for k, res := range all {
		b.clients = b.clientCounts[k]
		var c int
		lines, c = b.reportOne(res, lines)
		code = max(code, c)
	}
	for _, l := range extra {
		fmt.Println(l)
		lines = append(lines, l)
	}
	if b.o.Out != "" {
		// the folder may not exist yet (target/bench-results on a fresh clone)
		_ = os.MkdirAll(filepath.Dir(b.o.Out), 0o755)
		if err := os.WriteFile(b.o.Out, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", b.o.Out, err)
			return 1
		}
		util.Step("bench: wrote %s", b.o.Out)
	}
	return code
}

// reportOne prints the JSON lines of one client count.
func (b *bench) reportOne(res map[string]*modeResult, lines []string) ([]string, int) {
	code := 0
	base := res[modeNone]
	for _, m := range []string{modeNone, modeWebhook, modeWebhookNoop, modeKyverno, modeMAP, modeMAPJSON} {
		r, ok := res[m]
		if !ok {
			continue
		}
		obj := r.summary(b, base)
		if r.Check != nil && !r.Check.OK {
			code = 1
		}
		line, err := json.Marshal(obj)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return lines, 1
		}
		lines = append(lines, string(line))
		fmt.Println(string(line))
	}
	return lines, code
}
