package bench

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/scenarios"
	"serverconfig-webhook/e2e/harness/util"
)

// The soak of issue 20 (`e2e soak`, driven by `cargo xtask soak`):
//
//	e2e soak [harness flags] -- [-minutes N] [-rate R] [-rotate-every D] [-change-every D] [-out DIR]
//
// The suite's control plane and webhook (`serve` with the shipped flags,
// --sync included, under the shipped RBAC), the load fixture's namespaces
// (bench_fixture.go), the serving certificate in a kubelet-style volume.
// For -minutes: an open loop of R AdmissionReviews/s straight to /mutate
// (scenarios.OpenLoad), half of them for the Servers of the ServerConfigs a
// changer rewrites with a new image tag every -change-every, half spread
// over the other Servers; a new leaf from the same CA every -rotate-every;
// the webhook's RSS, descriptors and threads from /proc every -sample.
// Every answer's images are checked against the ServerConfig's history
// (soak_stats.go: judge). Samples and the summary are written to DIR.

// SoakOpts are the flags of `e2e soak`.
type SoakOpts struct {
	Minutes     float64
	Rate        int
	RotateEvery time.Duration
	ChangeEvery time.Duration
	Sample      time.Duration
	Namespaces  int
	Changed     int // ServerConfigs the changer rewrites (in different namespaces)
	Targets     int // other Servers the reviews are spread over
	Bound       time.Duration
	Out         string
	// pass criteria (docs/reliability.md, "Soak")
	MaxSlope      float64 // MiB/h: fail when the slope's 95% interval lies above it (and above StepAllowance over the window)
	StepAllowance float64 // MiB: one lasting step the window may hold (leakThreshold)
	FDTolerance   float64 // descriptors: fail when the last quarter's median exceeds the first's by more
	ThreadsToler  float64
}

func soakFlags(args []string) (*SoakOpts, error) {
	fs := flag.NewFlagSet("e2e soak", flag.ContinueOnError)
	o := &SoakOpts{}
	fs.Float64Var(&o.Minutes, "minutes", 60, "length of the load, minutes")
	fs.IntVar(&o.Rate, "rate", 200, "AdmissionReviews per second (open loop)")
	fs.DurationVar(&o.RotateEvery, "rotate-every", 10*time.Minute, "a new serving leaf (same CA) this often")
	fs.DurationVar(&o.ChangeEvery, "change-every", 3*time.Second, "the changed ServerConfigs are rewritten this often")
	fs.DurationVar(&o.Sample, "sample", 10*time.Second, "RSS, descriptors and threads sampled this often")
	fs.IntVar(&o.Namespaces, "namespaces", 1000, "namespaces of the load fixture (3 ServerConfigs and Servers each)")
	fs.IntVar(&o.Changed, "changed", 4, "ServerConfigs the changer rewrites, in different namespaces")
	fs.IntVar(&o.Targets, "targets", 200, "other Servers the reviews are spread over")
	fs.DurationVar(&o.Bound, "bound", 5*time.Second, "staleness bound: an answer may apply a version superseded at most this long before the review was sent")
	fs.StringVar(&o.Out, "out", "", "folder for soak-samples.csv and soak-summary.json (default: the work dir)")
	fs.Float64Var(&o.MaxSlope, "max-slope", 1, "MiB/h: fail when the RSS slope's 95% interval lies wholly above this and above -step-allowance over the analysed window")
	fs.Float64Var(&o.StepAllowance, "step-allowance", 1, "MiB: growth over the analysed window that is not called a leak (one lasting step)")
	fs.Float64Var(&o.FDTolerance, "fd-tolerance", 8, "fail when the median descriptor count of the last quarter exceeds the first quarter's by more")
	fs.Float64Var(&o.ThreadsToler, "thread-tolerance", 4, "the same for threads")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.Minutes <= 0 || o.Rate < 1 || o.RotateEvery <= 0 || o.ChangeEvery <= 0 || o.Sample <= 0 ||
		o.Namespaces < 1 || o.Changed < 1 || o.Changed > o.Namespaces || o.Targets < 1 {
		return nil, fmt.Errorf("-minutes, -rate, -rotate-every, -change-every, -sample, -namespaces, -changed (at most -namespaces) and -targets must be positive")
	}
	return o, nil
}

// soakTarget is one Server the reviews name: its review bodies and its
// ServerConfig's history.
type soakTarget struct {
	ns, server, config, base string
	body                     func(int64) ([]byte, string)
	hist                     *scHistory
}

// soakSample is one /proc reading of the webhook.
type soakSample struct {
	T       float64 `json:"t_s"` // seconds since the load started
	RSSKiB  int64   `json:"rss_kib"`
	HWMKiB  int64   `json:"hwm_kib"`
	FDs     int     `json:"fds"`
	Threads int     `json:"threads"`
	OK      int64   `json:"reviews_ok"`
	Failed  int64   `json:"reviews_failed"`
}

type soak struct {
	s       *scenarios.Suite
	o       *SoakOpts
	targets []*soakTarget // the changed first, then the others
	changed int
	// answer checks
	fresh, stale, wrong atomic.Int64
	superseded          atomic.Int64 // answers applying a version already superseded when the review was sent
	worstAge            atomic.Int64 // ns: the longest such a version had been superseded
	mu                  sync.Mutex
	firstBad            []string
	changes, changeErrs atomic.Int64
	// rotations
	rotations []map[string]any
	hsMu      sync.Mutex
	handshake map[string]int
}

// RunSoak is `e2e soak` (its own flags in args); the exit code is the
// process's: 0 when every criterion held.
func RunSoak(cfg controlplane.Config, args []string) int {
	o, err := soakFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 2
	}
	util.HandleSignals()
	defer util.Teardown()
	s, err := scenarios.Setup(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: setup failed: %v\n", err)
		return 1
	}
	if o.Out == "" {
		o.Out = s.CP.Dir
	}
	k := &soak{s: s, o: o, handshake: map[string]int{}}
	code, err := k.run(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	return code
}

func (k *soak) run(ctx context.Context) (int, error) {
	s, o := k.s, k.o
	for _, ns := range []string{k8s.ControllerNS, s.WH.PodNamespace} {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return 0, err
		}
	}
	servers, err := createBenchNamespaces(ctx, s.CP, s.Fx, o.Namespaces)
	if err != nil {
		return 0, err
	}
	pki := filepath.Join(s.CP.Dir, "pki")
	vol := filepath.Join(s.CP.Dir, "soak-tls")
	serial, err := scenarios.RotateLeaf(s.WH.CA, pki, "soak-leaf-0", vol)
	if err != nil {
		return 0, err
	}
	s.WH.Cert = controlplane.CertFiles{Cert: filepath.Join(vol, "tls.crt"), Key: filepath.Join(vol, "tls.key")}
	if err := s.WH.Start(); err != nil {
		return 0, err
	}
	k.rotations = append(k.rotations, map[string]any{"serial": serial, "at_s": 0.0})
	if err := k.pickTargets(ctx, servers); err != nil {
		return 0, err
	}
	client, tr := scenarios.WebhookClient([][]byte{s.WH.CA.CertPEM}, func(c *x509.Certificate) {
		k.hsMu.Lock()
		k.handshake[scenarios.SerialHex(c)]++
		k.hsMu.Unlock()
	})
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", s.WH.Port)
	// warm: every target answered with its fixture images before timing
	if err := util.Poll(60*time.Second, func() error { return k.probeAll(client, url) }); err != nil {
		return 0, fmt.Errorf("webhook not answering every target with its images: %w", err)
	}
	load := &scenarios.OpenLoad{URL: url, Client: client, Rate: o.Rate, MaxInFlight: 256,
		Body:  func(i int64) ([]byte, string) { return k.target(i).body(i) },
		Check: k.check}
	total := time.Duration(o.Minutes * float64(time.Minute))
	util.Step("soak: %v at %d reviews/s over %d Servers (%d ServerConfigs rewritten every %v), a new leaf every %v, webhook pid %d",
		total, o.Rate, len(k.targets), k.changed, o.ChangeEvery, o.RotateEvery, s.WH.Pid())
	loadCtx, stop := context.WithTimeout(ctx, total)
	defer stop()
	t0 := time.Now()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); load.Run(loadCtx) }()
	go func() { defer wg.Done(); k.changer(loadCtx) }()
	go func() { defer wg.Done(); k.rotator(loadCtx, t0, pki, vol) }()
	go func() {
		defer wg.Done()
		// new handshakes keep happening, so that every leaf is used
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-t.C:
				tr.CloseIdleConnections()
			}
		}
	}()
	samples := k.sampler(loadCtx, t0, load)
	wg.Wait()
	return k.report(total, load.Figures(), samples)
}

// pickTargets: the mlserver Server of o.Changed namespaces spread over the
// fixture, and o.Targets others spread evenly over all its Servers.
func (k *soak) pickTargets(ctx context.Context, servers []BenchServer) error {
	o := k.o
	per := len(benchConfigs)
	changedNS := map[string]bool{}
	var picked []BenchServer
	for i := 0; i < o.Changed; i++ {
		srv := servers[(i*o.Namespaces/o.Changed)*per] // benchConfigs[0]: mlserver
		changedNS[srv.Namespace] = true
		picked = append(picked, srv)
	}
	k.changed = len(picked)
	stride := max(1, len(servers)/o.Targets)
	for i := 0; i < len(servers) && len(picked) < k.changed+o.Targets; i += stride {
		// offset by one so the strides visit all three configs
		srv := servers[(i+(i/stride)%per)%len(servers)]
		if changedNS[srv.Namespace] && srv.Name == benchConfigs[0].Name {
			continue
		}
		picked = append(picked, srv)
	}
	util.Step("soak: building %d review bodies (the stand-in controller's StatefulSets)", len(picked))
	for _, p := range picked {
		desired, err := k.s.StandIn.Build(ctx, p.Namespace, p.Name)
		if err != nil {
			return err
		}
		body, err := scenarios.ReviewBodies(desired)
		if err != nil {
			return err
		}
		h := &scHistory{}
		h.add(scVersion{Tag: "fixture", Images: imageValues(k8s.ExpectedImages(k.s.Fx.ServerConfig(p.Base, p.ServerConfig, p.Namespace, "team")))})
		k.targets = append(k.targets, &soakTarget{ns: p.Namespace, server: p.Name, config: p.ServerConfig, base: p.Base, body: body, hist: h})
	}
	return nil
}

func imageValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// target of request i: even requests go round the changed Servers, odd
// ones round the others.
func (k *soak) target(i int64) *soakTarget {
	others := len(k.targets) - k.changed
	if i%2 == 0 || others == 0 {
		return k.targets[(i/2)%int64(k.changed)]
	}
	return k.targets[k.changed+int((i/2)%int64(others))]
}

func (k *soak) check(i int64, sent, answered time.Time, patch string) error {
	t := k.target(i)
	hs := t.hist.snapshot()
	v, verd, age := judge(hs, sent, answered, k.o.Bound, patch)
	if age > 0 {
		k.superseded.Add(1)
		for {
			w := k.worstAge.Load()
			if int64(age) <= w || k.worstAge.CompareAndSwap(w, int64(age)) {
				break
			}
		}
	}
	switch verd {
	case fresh:
		k.fresh.Add(1)
		return nil
	case stale:
		k.stale.Add(1)
		k.note(fmt.Sprintf("%s stale: %s/%s applied %s, superseded %.2f s before the review was sent", sent.Format("15:04:05.000"), t.ns, t.config, hs[v].Tag, age.Seconds()))
	case wrong:
		k.wrong.Add(1)
		k.note(fmt.Sprintf("%s wrong: %s/%s: the images of no version: %s", sent.Format("15:04:05.000"), t.ns, t.config, util.OneLine(patch)))
	}
	return nil // failures are transport, HTTP and denials; stale and wrong are counted apart
}

func (k *soak) note(s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.firstBad) < 5 {
		k.firstBad = append(k.firstBad, s)
	}
}

// probeAll sends one review per target and checks its fixture images.
func (k *soak) probeAll(client *http.Client, url string) error {
	for n, t := range k.targets {
		b, uid := t.body(int64(-1 - n))
		p, err := scenarios.PostReview(client, url, b, uid)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", t.ns, t.server, err)
		}
		now := time.Now()
		if v, verd, _ := judge(t.hist.snapshot(), now, now, 0, p); verd != fresh || v != 0 {
			return fmt.Errorf("%s/%s: not the fixture's images: %s", t.ns, t.server, util.OneLine(p))
		}
	}
	return nil
}

// changer rewrites every changed target's ServerConfig with a new image
// tag each o.ChangeEvery, recording each version before it is written.
func (k *soak) changer(ctx context.Context) {
	every(ctx, k.o.ChangeEvery, func(n int) bool {
		for _, tg := range k.targets[:k.changed] {
			tag := fmt.Sprintf("-soak%d", n)
			sc := k8s.WithImageSuffix(k.s.Fx.ServerConfig(tg.base, tg.config, tg.ns, "team"), tag)
			i := tg.hist.add(scVersion{Tag: tag, Images: imageValues(k8s.ExpectedImages(sc)), Start: time.Now()})
			wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := k.s.Apply(wctx, sc)
			cancel()
			// a failed write may still have been applied: the version stays
			// in the history, its end is when the next write returns
			tg.hist.wrote(i, time.Now())
			k.changes.Add(1)
			if err != nil {
				k.changeErrs.Add(1)
				k.note(fmt.Sprintf("write %s/%s %s: %v", tg.ns, tg.config, tag, err))
			}
		}
		return true
	})
}

// every calls f with 1, 2, ... once per d until ctx ends or f returns false.
func every(ctx context.Context, d time.Duration, f func(n int) bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !f(n) {
			return
		}
	}
}

// rotator swaps a new leaf of the same CA into the volume each
// o.RotateEvery and times until a new connection gets it.
func (k *soak) rotator(ctx context.Context, t0 time.Time, pki, vol string) {
	every(ctx, k.o.RotateEvery, func(n int) bool {
		// a leaf swapped in as the load ends would never be used: none in
		// its last 5 s (the ticker and the deadline fire together when
		// -rotate-every divides -minutes)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 5*time.Second {
			return false
		}
		r := map[string]any{"at_s": round3(time.Since(t0).Seconds())}
		serial, err := scenarios.RotateLeaf(k.s.WH.CA, pki, fmt.Sprintf("soak-leaf-%d", n), vol)
		if err == nil {
			var d time.Duration
			d, err = scenarios.WaitLeafServed(k.s.WH.Port, k.s.WH.CA.CertPEM, serial, 15*time.Second)
			r["served_after_s"] = round3(d.Seconds())
		}
		r["serial"] = serial
		if err != nil {
			r["error"] = err.Error()
		}
		util.Step("soak: rotation %d: leaf %s served after %v s (%v)", n, serial, r["served_after_s"], err)
		k.mu.Lock()
		k.rotations = append(k.rotations, r)
		k.mu.Unlock()
		return true
	})
}

// sampler reads the webhook's /proc entries every o.Sample until ctx ends.
func (k *soak) sampler(ctx context.Context, t0 time.Time, load *scenarios.OpenLoad) []soakSample {
	pid := k.s.WH.Pid()
	var out []soakSample
	take := func() {
		sm, err := procSample(pid)
		if err != nil {
			k.note(fmt.Sprintf("sample: %v", err))
			return
		}
		f := load.Figures()
		sm.T, sm.OK, sm.Failed = round3(time.Since(t0).Seconds()), f.OK, f.Failed
		out = append(out, sm)
		util.Step("soak: %6.0f s  RSS %6.1f MiB  HWM %6.1f MiB  fds %4d  threads %3d  ok %d failed %d stale %d wrong %d",
			sm.T, float64(sm.RSSKiB)/1024, float64(sm.HWMKiB)/1024, sm.FDs, sm.Threads, f.OK, f.Failed, k.stale.Load(), k.wrong.Load())
	}
	take()
	t := time.NewTicker(k.o.Sample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
			take()
		}
	}
}

// procSample reads VmRSS, VmHWM and Threads from /proc/pid/status and
// counts /proc/pid/fd.
func procSample(pid int) (soakSample, error) {
	st, err := util.ReadProcStatus(pid)
	if err != nil {
		return soakSample{}, err
	}
	sm := soakSample{RSSKiB: st.RSSKiB, HWMKiB: st.HWMKiB, Threads: st.Threads}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return sm, err
	}
	sm.FDs = len(fds)
	return sm, nil
}

// report writes the samples (CSV) and the summary (JSON) to o.Out, prints
// the summary, and returns 1 when a criterion failed.
func (k *soak) report(total time.Duration, f scenarios.LoadFigures, samples []soakSample) (int, error) {
	o := k.o
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return 0, err
	}
	var csv strings.Builder
	csv.WriteString("t_s,rss_kib,hwm_kib,fds,threads,reviews_ok,reviews_failed\n")
	for _, sm := range samples {
		fmt.Fprintf(&csv, "%.3f,%d,%d,%d,%d,%d,%d\n", sm.T, sm.RSSKiB, sm.HWMKiB, sm.FDs, sm.Threads, sm.OK, sm.Failed)
	}
	if err := os.WriteFile(filepath.Join(o.Out, "soak-samples.csv"), []byte(csv.String()), 0o644); err != nil {
		return 0, err
	}
	wu := warmup(total).Seconds()
	var xs, rss, fds, thr []float64
	for _, sm := range samples {
		if sm.T < wu {
			continue
		}
		mib := float64(sm.RSSKiB) / 1024
		xs = append(xs, sm.T/3600)
		rss = append(rss, mib)
		fds = append(fds, float64(sm.FDs))
		thr = append(thr, float64(sm.Threads))
	}
	minRSS, maxRSS := minOf(rss), maxOf(rss)
	fit, fitOK := fitSlope(xs, rss)
	var window time.Duration
	if len(xs) > 1 {
		window = time.Duration((xs[len(xs)-1] - xs[0]) * float64(time.Hour))
	}
	limit := leakThreshold(window, o.MaxSlope, o.StepAllowance)
	var hwm int64
	if len(samples) > 0 {
		hwm = samples[len(samples)-1].HWMKiB
	}
	var failures []string
	if f.Failed > 0 {
		failures = append(failures, fmt.Sprintf("%d failed reviews", f.Failed))
	}
	if n := k.stale.Load(); n > 0 {
		failures = append(failures, fmt.Sprintf("%d answers staler than %v", n, o.Bound))
	}
	if n := k.wrong.Load(); n > 0 {
		failures = append(failures, fmt.Sprintf("%d answers with the images of no version", n))
	}
	if f.NotSent > 0 {
		failures = append(failures, fmt.Sprintf("%d reviews not sent (generator saturated)", f.NotSent))
	}
	if n := k.changeErrs.Load(); n > 0 {
		failures = append(failures, fmt.Sprintf("%d ServerConfig writes failed", n))
	}
	if !fitOK {
		failures = append(failures, fmt.Sprintf("%d samples after the warm-up: too few for a slope", len(xs)))
	} else if fit.Lo > limit {
		failures = append(failures, fmt.Sprintf("RSS grows: slope %.2f MiB/h, 95%% interval [%.2f, %.2f] above %.2f MiB/h", fit.Slope, fit.Lo, fit.Hi, limit))
	}
	if g := quarterGrowth(fds); g > o.FDTolerance {
		failures = append(failures, fmt.Sprintf("descriptors grow: median of the last quarter %.0f above the first's", g))
	}
	if g := quarterGrowth(thr); g > o.ThreadsToler {
		failures = append(failures, fmt.Sprintf("threads grow: median of the last quarter %.0f above the first's", g))
	}
	k.mu.Lock()
	rotations := k.rotations
	bad := k.firstBad
	k.mu.Unlock()
	for _, r := range rotations[1:] {
		if _, e := r["error"]; e {
			failures = append(failures, fmt.Sprintf("rotation at %v s: %v", r["at_s"], r["error"]))
		}
	}
	k.hsMu.Lock()
	hs := map[string]int{}
	for sn, c := range k.handshake {
		hs[sn] = c
	}
	k.hsMu.Unlock()
	for _, r := range rotations {
		if sn, _ := r["serial"].(string); hs[sn] == 0 {
			failures = append(failures, fmt.Sprintf("leaf %s never served to the load", sn))
		}
	}
	summary := map[string]any{
		"soak":                    "issue-20",
		"date":                    time.Now().UTC().Format(time.RFC3339),
		"kubernetes":              k.s.CP.GitVersion,
		"minutes":                 o.Minutes,
		"rate":                    o.Rate,
		"achieved_rate":           round3(f.Rate),
		"namespaces":              o.Namespaces,
		"servers_reviewed":        len(k.targets),
		"serverconfigs_changed":   k.changed,
		"change_every_s":          o.ChangeEvery.Seconds(),
		"serverconfig_writes":     k.changes.Load(),
		"serverconfig_write_errs": k.changeErrs.Load(),
		"rotate_every_s":          o.RotateEvery.Seconds(),
		"rotations":               rotations,
		"handshakes_per_leaf":     hs,
		"webhook_args":            k.s.WH.Proc.Cmd.Args[1:],
		"reviews_started":         f.Started,
		"reviews_ok":              f.OK,
		"reviews_failed":          f.Failed,
		"reviews_not_sent":        f.NotSent,
		"answers_fresh":           k.fresh.Load(),
		"answers_stale":           k.stale.Load(),
		"answers_wrong":           k.wrong.Load(),
		"answers_superseded":      k.superseded.Load(),
		"stalest_answer_s":        round3(time.Duration(k.worstAge.Load()).Seconds()),
		"staleness_bound_s":       o.Bound.Seconds(),
		"latency_ms":              map[string]float64{"p50": ms(f.P50), "p99": ms(f.P99), "max": ms(f.Max)},
		"warmup_s":                wu,
		"samples":                 len(samples),
		"samples_after_warmup":    len(xs),
		"rss_mib":                 map[string]float64{"min": round3(minRSS), "max": round3(maxRSS)},
		"rss_slope_mib_per_h":     map[string]float64{"slope": round3(fit.Slope), "ci95_lo": round3(fit.Lo), "ci95_hi": round3(fit.Hi), "lag1": round3(fit.Lag1), "n_eff": round3(fit.NEff)},
		"slope_limit_mib_per_h":   round3(limit),
		"analysed_window_s":       round3(window.Seconds()),
		"vm_hwm_mib":              round3(float64(hwm) / 1024),
		"fds":                     map[string]float64{"min": minOf(fds), "max": maxOf(fds), "quarter_growth": quarterGrowth(fds)},
		"threads":                 map[string]float64{"min": minOf(thr), "max": maxOf(thr), "quarter_growth": quarterGrowth(thr)},
		"first_problems":          bad,
		"load_errors":             f.Errors,
		"failures":                failures,
		"pass":                    len(failures) == 0,
	}
	b, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "soak-summary.json"), append(b, '\n'), 0o644); err != nil {
		return 0, err
	}
	fmt.Println(string(b))
	fmt.Fprintf(os.Stderr, "soak: %d reviews (%.0f/s), %d failed, %d stale, %d wrong, %d not sent, stalest answer %.3f s; RSS %.1f-%.1f MiB after %.0f s warm-up, slope %.2f MiB/h (95%% CI %.2f to %.2f); fds %.0f-%.0f, threads %.0f-%.0f; wrote %s\n",
		f.Started, f.Rate, f.Failed, k.stale.Load(), k.wrong.Load(), f.NotSent, time.Duration(k.worstAge.Load()).Seconds(), minRSS, maxRSS, wu, fit.Slope, fit.Lo, fit.Hi,
		minOf(fds), maxOf(fds), minOf(thr), maxOf(thr), o.Out)
	if len(failures) > 0 {
		fmt.Fprintf(os.Stderr, "soak: FAIL: %s\n", strings.Join(failures, "; "))
		return 1, nil
	}
	fmt.Fprintln(os.Stderr, "soak: PASS")
	return 0, nil
}

func minOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
