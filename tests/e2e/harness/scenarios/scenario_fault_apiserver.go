package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

const (
	faNS     = "fault-apiserver"
	faConfig = "fa-config"
	faServer = "fa"
)

// directProbe sends one review to the webhook's /mutate and checks that the
// patch carries want.
func (s *Suite) directProbe(client *http.Client, body func(int64) ([]byte, string), n int64, want []string) error {
	b, uid := body(n)
	resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d/mutate", s.WH.Port), "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	_, err = reviewAnswer(resp.StatusCode, rb, uid, want)
	return err
}

// dryRunImages sends the stand-in's StatefulSet as a dry-run create through
// the API server (which calls the webhook) and returns the images stored.
func (s *Suite) dryRunImages(ctx context.Context, desired *appsv1.StatefulSet, name string) (map[string]string, error) {
	o := desired.DeepCopy()
	o.Name = name
	got, err := s.CP.Kube.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return nil, err
	}
	return k8s.TemplateImages(got.Spec.Template.Spec), nil
}

// scenarioFaultAPIServer: kube-apiserver is stopped and started again (same
// etcd, port and certificates) under a running webhook. While it is down
// the webhook keeps answering from its caches; after the restart the first
// admissions through the API server carry the team's images; a ServerConfig
// change made right after the restart reaches the webhook within a bounded
// time (figure: staleness, next to the same change with a healthy watch),
// and once it has, no admission uses the old one.
func scenarioFaultAPIServer(ctx context.Context, s *Suite) error {
	const sc = "fault-apiserver-restart"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, faNS); err != nil {
		return err
	}
	v := func(tag string) map[string]string {
		if tag == "" {
			return k8s.ExpectedImages(s.teamConfig(faNS, faConfig))
		}
		return k8s.ExpectedImages(s.teamConfigSuffix(faNS, faConfig, tag))
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", faConfig, k8s.FormPlatform), s.teamConfig(faNS, faConfig),
		k8s.NewServer(faNS, faServer, faConfig, 1, nil)); err != nil {
		return err
	}
	defer func() { _ = s.deleteSC(context.Background(), k8s.ControllerNS, faConfig) }()
	desired, err := s.StandIn.Build(ctx, faNS, faServer)
	if err != nil {
		return err
	}
	body, _, err := s.loadReview(ctx, faNS, faServer, faConfig)
	if err != nil {
		return err
	}
	client, _ := webhookClient([][]byte{s.WH.CA.CertPEM}, nil)
	var n int64
	var tChange time.Time
	// staleness: time from the change being written until a direct review
	// gets a patch with the new images
	staleness := func(tag string, timeout time.Duration) (time.Duration, error) {
		if err := s.Apply(ctx, s.teamConfigSuffix(faNS, faConfig, tag)); err != nil {
			return 0, err
		}
		t0 := time.Now()
		tChange = t0
		want := imageList(v(tag))
		err := util.PollEvery(timeout, 20*time.Millisecond, func() error {
			n++
			return s.directProbe(client, body, n, want)
		})
		return time.Since(t0), err
	}
	if err := util.Poll(20*time.Second, func() error { n++; return s.directProbe(client, body, n, imageList(v(""))) }); err != nil {
		return fmt.Errorf("webhook not serving the team's images before the restart: %w", err)
	}
	base, err := staleness("-v1", 20*time.Second)
	s.r.Check(checkName(sc, "baseline-change-seen"), err == nil, "a ServerConfig change reached the webhook's cache %s after it was written (healthy watch) %v", base.Round(time.Millisecond), err)

	const down = 10 * time.Second
	// runs last, after the API server is back: the next scenario must not
	// inherit kube-controller-manager's reconnect backoff
	defer func() {
		took, err := s.CP.WaitControllerManagerCaughtUp(context.Background(), 120*time.Second)
		s.r.Check(checkName(sc, "controller-manager-caught-up"), err == nil,
			"kube-controller-manager gave a new StatefulSet its Pod %s after the scenario's last restart %v", secs(took), err)
	}()
	tDown := time.Now()
	s.CP.StopAPIServer()
	restarted := false
	defer func() {
		if !restarted {
			_ = s.CP.StartAPIServer()
		}
	}()
	time.Sleep(2 * time.Second)
	n++
	derr := s.directProbe(client, body, n, imageList(v("-v1")))
	s.r.Check(checkName(sc, "answers-while-down"), derr == nil, "with kube-apiserver stopped, a review still gets the cached ServerConfig's images %v", derr)
	time.Sleep(time.Until(tDown.Add(down)))
	if err := s.CP.StartAPIServer(); err != nil {
		return err
	}
	restarted = true
	tUp := time.Now()
	util.Step("%s: kube-apiserver back after %s down", sc, secs(tUp.Sub(tDown)))

	// the first admissions after the restart, through the API server
	var first []string
	firstOK := true
	for i := 0; i < 3; i++ {
		var imgs map[string]string
		err := util.Poll(30*time.Second, func() error {
			var err error
			imgs, err = s.dryRunImages(ctx, desired, fmt.Sprintf("fa-first-%d", i))
			return err
		})
		first = append(first, fmt.Sprintf("%s %v", k8s.FmtImages(imgs), err))
		firstOK = firstOK && err == nil && k8s.SameImages(imgs, v("-v1"))
	}
	s.r.Check(checkName(sc, "first-admissions-correct"), firstOK, "first 3 dry-run creates through the restarted API server: %v", first)

	// a change right after the restart; dry-run creates through the API
	// server every 100 ms meanwhile, counting those that used the old one
	var mu sync.Mutex
	var stale, fresh, errs, staleAfterSeen int
	var lastStale time.Time
	var seenAt time.Time
	bgCtx, stopBG := context.WithCancel(ctx)
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		for i := 0; bgCtx.Err() == nil; i++ {
			imgs, err := s.dryRunImages(bgCtx, desired, fmt.Sprintf("fa-bg-%d", i%4))
			mu.Lock()
			switch {
			case err != nil:
				if bgCtx.Err() == nil {
					errs++
				}
			case k8s.SameImages(imgs, v("-v2")):
				fresh++
			default:
				stale++
				lastStale = time.Now()
				if !seenAt.IsZero() && time.Since(seenAt) > 200*time.Millisecond {
					staleAfterSeen++
				}
			}
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	after, err := staleness("-v2", 90*time.Second)
	mu.Lock()
	seenAt = time.Now()
	mu.Unlock()
	time.Sleep(2 * time.Second) // admissions keep flowing after the change is seen
	stopBG()
	<-bgDone
	mu.Lock()
	lastStaleAfter := "none"
	if !lastStale.IsZero() {
		lastStaleAfter = fmt.Sprintf("%s after the change was written", lastStale.Sub(tChange).Round(time.Millisecond))
	}
	// bound: kube-runtime's watcher backoff (0.8 s doubling to 30 s) plus a
	// relist; generous
	s.r.Check(checkName(sc, "change-after-restart-seen"), err == nil && after <= 60*time.Second,
		"after a %s outage (stop to ready), a ServerConfig change written %s after the restart reached the webhook %s later (watch healthy: %s; bound: the watcher's 30 s maximum backoff) %v",
		secs(tUp.Sub(tDown)), tChange.Sub(tUp).Round(time.Millisecond), after.Round(time.Millisecond), base.Round(time.Millisecond), err)
	s.r.Check(checkName(sc, "no-stale-after-seen"), staleAfterSeen == 0 && fresh > 0 && errs == 0,
		"dry-run creates through the API server meanwhile: %d with the old images (all before the webhook saw the change; last at %s), %d with the new, %d errors; %d stale after the change was seen",
		stale, lastStaleAfter, fresh, errs, staleAfterSeen)
	util.Step("FIGURE %s: staleness after a %s API server outage %s (healthy watch %s); %d stale admissions in that window",
		sc, secs(tUp.Sub(tDown)), after.Round(time.Millisecond), base.Round(time.Millisecond), stale)
	mu.Unlock()
	if err := s.faultAPIServerHA(ctx, sc, desired, v, func(want []string) error {
		n++
		return s.directProbe(client, body, n, want)
	}); err != nil {
		return err
	}
	return s.Apply(ctx, s.teamConfig(faNS, faConfig))
}

// faultAPIServerHA: a second kube-apiserver on the same etcd (an HA
// control plane); the one the webhook talks to crashes (SIGKILL) and a
// ServerConfig changes through the other while it is down. Admissions
// through the surviving API server use the cached (previous) ServerConfig
// until the webhook's watch is back: staleness from the change, and from the
// webhook's API server being back, is the figure; none after it was seen.
func (s *Suite) faultAPIServerHA(ctx context.Context, sc string, desired *appsv1.StatefulSet, v func(string) map[string]string, probe func([]string) error) error {
	_, k2, d2, stop2, err := s.CP.SecondAPIServer()
	if err != nil {
		return err
	}
	defer stop2()
	tDown := time.Now()
	s.CP.KillAPIServer()
	restarted := false
	defer func() {
		if !restarted {
			_ = s.CP.StartAPIServer()
		}
	}()
	time.Sleep(2 * time.Second)
	body, err := json.Marshal(s.teamConfigSuffix(faNS, faConfig, "-v3").Object)
	if err != nil {
		return err
	}
	force := true
	if _, err := d2.Resource(k8s.GVRServerConfig).Namespace(faNS).Patch(ctx, faConfig, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: k8s.FieldManager, Force: &force}); err != nil {
		return fmt.Errorf("change through the second API server: %w", err)
	}
	tChange := time.Now()
	var mu sync.Mutex
	var stale, fresh, errs, staleAfterSeen int
	var seenAt time.Time
	bgCtx, stopBG := context.WithCancel(ctx)
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		for i := 0; bgCtx.Err() == nil; i++ {
			o := desired.DeepCopy()
			o.Name = fmt.Sprintf("fa-ha-%d", i%4)
			got, err := k2.AppsV1().StatefulSets(faNS).Create(bgCtx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			mu.Lock()
			switch {
			case err != nil:
				if bgCtx.Err() == nil {
					errs++
				}
			case k8s.SameImages(k8s.TemplateImages(got.Spec.Template.Spec), v("-v3")):
				fresh++
			default:
				stale++
				if !seenAt.IsZero() && time.Since(seenAt) > 200*time.Millisecond {
					staleAfterSeen++
				}
			}
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var tUp time.Time
	upDone := make(chan error, 1)
	go func() {
		time.Sleep(time.Until(tDown.Add(10 * time.Second)))
		err := s.CP.StartAPIServer()
		mu.Lock()
		tUp = time.Now()
		mu.Unlock()
		upDone <- err
	}()
	want := imageList(v("-v3"))
	perr := util.PollEvery(120*time.Second, 20*time.Millisecond, func() error { return probe(want) })
	mu.Lock()
	seenAt = time.Now()
	mu.Unlock()
	uerr := <-upDone
	restarted = uerr == nil
	time.Sleep(2 * time.Second)
	stopBG()
	<-bgDone
	mu.Lock()
	defer mu.Unlock()
	total := seenAt.Sub(tChange)
	afterUp := seenAt.Sub(tUp)
	s.r.Check(checkName(sc, "ha-change-while-down-seen"), perr == nil && uerr == nil && afterUp <= 60*time.Second,
		"the webhook's API server crashed; a ServerConfig change written through a second API server %s into the %s outage reached the webhook %s after it was written, %s after its API server was back (bound: the watcher's 30 s maximum backoff) %v %v",
		tChange.Sub(tDown).Round(100*time.Millisecond), tUp.Sub(tDown).Round(100*time.Millisecond), total.Round(time.Millisecond), afterUp.Round(time.Millisecond), perr, uerr)
	s.r.Check(checkName(sc, "ha-no-stale-after-seen"), staleAfterSeen == 0 && fresh > 0 && errs == 0,
		"dry-run creates through the second API server meanwhile: %d with the previous images, %d with the new, %d errors; %d stale after the change was seen",
		stale, fresh, errs, staleAfterSeen)
	util.Step("FIGURE %s: HA, change while the webhook's API server is down: used %s after the change (%s after that API server was back); %d stale admissions through the other API server",
		sc, total.Round(time.Millisecond), afterUp.Round(time.Millisecond), stale)
	return nil
}
