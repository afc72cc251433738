package scenarios

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

const (
	feNS     = "fault-etcd"
	feConfig = "fe-config"
	feServer = "fe"
	// feDown is how long etcd stays stopped
	feDown = 10 * time.Second
)

// scenarioFaultEtcd: etcd is stopped and started again (same data and
// ports) while reviews arrive at the webhook at faultLoadRate. kube-apiserver
// stays up but can serve nothing from storage, so the webhook's watches
// break and its direct GETs fail: every review must still be answered, from
// the caches, with the team's images. After etcd is back, a ServerConfig
// change must reach the answers within the staleness bound, and no
// admission through the API server may use the old one once it has.
// Figures: reviews and failures during the outage, how long the API server
// took to be ready after etcd, the staleness of the first change.
func scenarioFaultEtcd(ctx context.Context, s *Suite) error {
	const sc = "fault-etcd-restart"
	f, cleanup, err := s.newStaleFixture(ctx, feNS, feConfig, feServer)
	if err != nil {
		return err
	}
	defer cleanup()
	v := f.images
	base, err := f.change(ctx, "-v1", 20*time.Second)
	s.r.Check(checkName(sc, "baseline-change-seen"), err == nil, "a ServerConfig change reached the webhook %s after it was written (healthy watch) %v", base.Round(time.Millisecond), err)

	defer s.checkControllerManagerCaughtUp(sc, "etcd came back")

	load := &OpenLoad{URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", s.WH.Port), Client: f.client, Rate: controlPlaneFaultRate,
		Body: f.body, Want: imageList(v("-v1"))}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() { load.Run(loadCtx); close(loadDone) }()
	time.Sleep(2 * time.Second)
	const restarts, untrusted = "serverconfig_webhook_watch_restarts_total", "serverconfig_webhook_untrusted_lookups_total"
	m0 := s.WH.Metrics()
	a0, err := s.CP.APIServerMetrics(ctx)
	if err != nil {
		return err
	}
	pid := s.WH.Pid()

	tDown := time.Now()
	s.CP.StopEtcd()
	restarted := false
	defer func() {
		if !restarted {
			_ = s.CP.StartEtcd()
			_ = s.CP.APIServerReady()
		}
	}()
	// the fault is real: the API server cannot read the ServerConfig
	time.Sleep(2 * time.Second)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, rerr := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(feNS).Get(rctx, feConfig, v1.GetOptions{})
	cancel()
	s.r.Check(checkName(sc, "storage-down"), rerr != nil, "with etcd stopped, a GET of the ServerConfig through kube-apiserver fails: %v", rerr)
	time.Sleep(time.Until(tDown.Add(feDown)))

	if err := s.CP.StartEtcd(); err != nil {
		return err
	}
	tEtcd := time.Now()
	if err := s.CP.APIServerReady(); err != nil {
		return err
	}
	restarted = true
	tReady := time.Now()
	util.Step("%s: etcd back after %s; kube-apiserver ready %s later", sc, secs(tEtcd.Sub(tDown)), tReady.Sub(tEtcd).Round(10*time.Millisecond))
	time.Sleep(2 * time.Second)
	stopLoad()
	<-loadDone
	fig := load.Figures()
	m1 := s.WH.Metrics()
	a1, err := s.CP.APIServerMetrics(ctx)
	if err != nil {
		return err
	}
	s.r.Check(checkName(sc, "reviews-answered"), fig.Failed == 0 && fig.OK > 0 && fig.HTTP2 == fig.OK,
		"reviews at %d/s from 2 s before etcd stopped to 2 s after the API server was ready again (%s outage; the webhook's refusals meanwhile: %s): %s",
		controlPlaneFaultRate, secs(tEtcd.Sub(tDown)), refusalsSince(m0, m1), fig)

	// a change right after the API server is ready; dry-run creates through
	// it every 100 ms meanwhile, counting those that used the old one
	after, tally, err := f.changeWhileAdmitting(ctx, "-v2", "fe-bg-", 90*time.Second)
	tChange := f.changed
	s.r.Check(checkName(sc, "change-after-restart-seen"), err == nil && after <= stalenessBound,
		"a ServerConfig change written %s after the API server was ready again reached the webhook %s later (healthy watch: %s; bound: %s) %v",
		tChange.Sub(tReady).Round(time.Millisecond), after.Round(time.Millisecond), base.Round(time.Millisecond), stalenessBound, err)
	s.r.Check(checkName(sc, "no-stale-after-seen"), tally.ok(),
		"dry-run creates through the API server meanwhile: %s", tally.describe(tChange))
	exited, _ := s.WH.Proc.Exited()
	s.r.Check(checkName(sc, "webhook-alive"), !exited && s.WH.Pid() == pid, "the webhook process (pid %d) is still the one running (exited: %v)", pid, exited)
	// The watches may go silent while etcd is down (kube-apiserver keeps
	// them open; some runs saw untrusted lookups, none a restart): past the
	// trust window reviews ask the API server, whose GETs cannot be served,
	// and the cached copy answers. Those GETs are bounded by the process's limiter (burst 200,
	// then 100/s, and paused 1 s after one fails), not one per lookup: the
	// API server's own count of single-object GETs of Servers and
	// ServerConfigs (the harness's storage-down GET among them).
	answers := func(answer string) float64 {
		l := `answer="` + answer + `"`
		return metricTotal(m1, untrusted, l) - metricTotal(m0, untrusted, l)
	}
	gets := func(m string) float64 {
		return metricTotal(m, "apiserver_request_total", `resource="serverconfigs",scope="resource",subresource="",verb="GET"`) +
			metricTotal(m, "apiserver_request_total", `resource="servers",scope="resource",subresource="",verb="GET"`)
	}
	dRestarts := metricTotal(m1, restarts, "") - metricTotal(m0, restarts, "")
	dGets, dUntrusted := gets(a1)-gets(a0), metricTotal(m1, untrusted, "")-metricTotal(m0, untrusted, "")
	getBound := 200 + 100*fig.Seconds + 1
	s.r.Check(checkName(sc, "direct-gets-bounded"), fig.Started > 0 && dGets <= getBound,
		"during the outage %.0f of %d reviews made an untrusted lookup (answered by a GET %.0f, by a GET of the last 500 ms %.0f, by the cached copy %.0f); the API server counted %.0f GETs of Servers and ServerConfigs (bound %.0f); %s +%.0f",
		dUntrusted, fig.Started, answers("get"), answers("recent_get"), answers("cache"), dGets, getBound, restarts, dRestarts)
	util.Step("FIGURE %s: %s etcd outage: %d reviews, %d failed, p99 %s; %.0f watch restarts, %.0f untrusted lookups (%.0f GETs); API server ready %s after etcd; change seen %s after it was written",
		sc, secs(tEtcd.Sub(tDown)), fig.Started, fig.Failed, fig.P99.Round(100*time.Microsecond), dRestarts, dUntrusted, dGets, tReady.Sub(tEtcd).Round(10*time.Millisecond), after.Round(time.Millisecond))
	return f.restore(ctx)
}
