package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
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
	// stalenessBound: no admission may apply a ServerConfig older than this
	// than the API server's current one (issue 20's target)
	stalenessBound = 5 * time.Second
)

// directProbe sends one review to the webhook's /mutate and checks that the
// patch carries want.
func (s *Suite) directProbe(client *http.Client, body func(int64) ([]byte, string), n int64, want []string) error {
	b, uid := body(n)
	p, err := PostReview(client, fmt.Sprintf("https://127.0.0.1:%d/mutate", s.WH.Port), b, uid)
	if err != nil {
		return err
	}
	for _, w := range want {
		if !strings.Contains(p, w) {
			return fmt.Errorf("patch lacks %s: %s", w, util.OneLine(p))
		}
	}
	return nil
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

// checkControllerManagerCaughtUp checks, after an outage of the control
// plane, that kube-controller-manager acts on new objects again: its
// informers reconnect with their own backoff, which the next scenario must
// not inherit.
func (s *Suite) checkControllerManagerCaughtUp(sc, after string) {
	took, err := s.CP.WaitControllerManagerCaughtUp(context.Background(), 120*time.Second)
	s.r.Check(checkName(sc, "controller-manager-caught-up"), err == nil,
		"kube-controller-manager gave a new StatefulSet its Pod %s after %s %v", secs(took), after, err)
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
	f, cleanup, err := s.newStaleFixture(ctx, faNS, faConfig, faServer)
	if err != nil {
		return err
	}
	defer cleanup()
	v, desired := f.images, f.desired
	base, err := f.change(ctx, "-v1", 20*time.Second)
	s.r.Check(checkName(sc, "baseline-change-seen"), err == nil, "a ServerConfig change reached the webhook's cache %s after it was written (healthy watch) %v", base.Round(time.Millisecond), err)

	const down = 10 * time.Second
	// runs last, after the API server is back: the next scenario must not
	// inherit kube-controller-manager's reconnect backoff
	defer s.checkControllerManagerCaughtUp(sc, "the scenario's last restart")
	tDown := time.Now()
	s.CP.StopAPIServer()
	restarted := false
	defer func() {
		if !restarted {
			_ = s.CP.StartAPIServer()
		}
	}()
	time.Sleep(2 * time.Second)
	derr := f.probe(v("-v1"))
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
	after, tally, err := f.changeWhileAdmitting(ctx, "-v2", "fa-bg-", 90*time.Second)
	tChange := f.changed
	// bound: the staleness target (the watch's reconnect backoff is at most
	// 2 s, and a review meanwhile asks the API server)
	s.r.Check(checkName(sc, "change-after-restart-seen"), err == nil && after <= stalenessBound,
		"after a %s outage (stop to ready), a ServerConfig change written %s after the restart reached the webhook %s later (watch healthy: %s; bound: %s) %v",
		secs(tUp.Sub(tDown)), tChange.Sub(tUp).Round(time.Millisecond), after.Round(time.Millisecond), base.Round(time.Millisecond), stalenessBound, err)
	s.r.Check(checkName(sc, "no-stale-after-seen"), tally.ok(),
		"dry-run creates through the API server meanwhile: %s", tally.describe(tChange))
	util.Step("FIGURE %s: staleness after a %s API server outage %s (healthy watch %s); %d stale admissions in that window",
		sc, secs(tUp.Sub(tDown)), after.Round(time.Millisecond), base.Round(time.Millisecond), tally.staleCount())
	if err := s.faultAPIServerHA(ctx, sc, desired, v, f.probe); err != nil {
		return err
	}
	return f.restore(ctx)
}

// faultAPIServerHA: a second kube-apiserver on the same etcd (an HA
// control plane); the one the webhook talks to crashes (SIGKILL) and a
// ServerConfig changes through the other while it is down. Admissions
// through the surviving API server use the cached (previous) ServerConfig
// until the webhook's watch is back: staleness from the change, and from the
// webhook's API server being back, is the figure; none after it was seen.
func (s *Suite) faultAPIServerHA(ctx context.Context, sc string, desired *appsv1.StatefulSet, v func(string) map[string]string, probe func(map[string]string) error) error {
	rc2, k2, d2, stop2, err := s.CP.SecondAPIServer()
	if err != nil {
		return err
	}
	defer stop2()
	// the second member joins the webhook's way in (the Service's endpoints,
	// a load balancer's pool)
	second := strings.TrimPrefix(rc2.Host, "https://")
	s.CP.VIP.AddBackend(second)
	defer s.CP.VIP.RemoveBackend(second)
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
	tally := tallyAdmissions(ctx, v("-v3"), func(ctx context.Context, i int) (map[string]string, error) {
		o := desired.DeepCopy()
		o.Name = fmt.Sprintf("fa-ha-%d", i%4)
		got, err := k2.AppsV1().StatefulSets(faNS).Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return nil, err
		}
		return k8s.TemplateImages(got.Spec.Template.Spec), nil
	})
	var mu sync.Mutex
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
	want := v("-v3")
	perr := util.PollEvery(120*time.Second, 20*time.Millisecond, func() error { return probe(want) })
	seenAt := time.Now()
	tally.seen()
	uerr := <-upDone
	restarted = uerr == nil
	tally.stop(2 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	total := seenAt.Sub(tChange)
	s.r.Check(checkName(sc, "ha-change-while-down-seen"), perr == nil && uerr == nil && total <= stalenessBound,
		"the webhook's API server crashed; a ServerConfig change written through the other API server %s into the %s outage reached the webhook %s after it was written (bound: %s) %v %v",
		tChange.Sub(tDown).Round(100*time.Millisecond), tUp.Sub(tDown).Round(100*time.Millisecond), total.Round(time.Millisecond), stalenessBound, perr, uerr)
	s.r.Check(checkName(sc, "ha-no-stale-after-seen"), tally.ok(),
		"dry-run creates through the other API server meanwhile: %s", tally.describe(tChange))
	util.Step("FIGURE %s: HA, change while the webhook's API server is down: used %s after the change; %d stale admissions through the other API server",
		sc, total.Round(time.Millisecond), tally.staleCount())
	return nil
}
