package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// shippedProbe reads the shipped Deployment's --shutdown-delay and the
// readiness probe's periodSeconds and failureThreshold.
func shippedProbe(repo string) (delay string, period time.Duration, threshold int, err error) {
	objs, err := k8s.DecodeYAMLFile(filepath.Join(repo, controlplane.DeployDir, "deployment.yaml"))
	if err != nil {
		return "", 0, 0, err
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if len(cs) == 0 {
			continue
		}
		c, _ := cs[0].(map[string]any)
		args, _ := c["args"].([]any)
		for _, a := range args {
			if s, _ := a.(string); strings.HasPrefix(s, "--shutdown-delay=") {
				delay = strings.TrimPrefix(s, "--shutdown-delay=")
			}
		}
		num := func(field string) int64 {
			v, _, _ := unstructured.NestedFieldNoCopy(c, "readinessProbe", field)
			switch n := v.(type) {
			case int64:
				return n
			case float64:
				return int64(n)
			}
			return 0
		}
		period, threshold = time.Duration(num("periodSeconds"))*time.Second, int(num("failureThreshold"))
	}
	if delay == "" || period == 0 || threshold == 0 {
		return "", 0, 0, fmt.Errorf("%s/deployment.yaml: no --shutdown-delay or readinessProbe period/threshold", controlplane.DeployDir)
	}
	return delay, period, threshold, nil
}

// scenarioFaultSIGTERM: a webhook replica with the shipped --shutdown-delay
// serves an open-loop load of 1,000 AdmissionReviews/s; it gets SIGTERM.
// The load stops routing to it the way the shipped readiness probe would
// take it out of rotation (polled every periodSeconds, out after
// failureThreshold failures), so requests keep arriving during the delay.
// Every request sent must get a correct answer (failed in-flight requests:
// target 0); after the delay new connections are refused and the process
// exits 0.
func scenarioFaultSIGTERM(ctx context.Context, s *Suite) error {
	const sc = "fault-sigterm"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.applyFaultFixtures(ctx); err != nil {
		return err
	}
	delay, period, threshold, err := shippedProbe(s.Cfg.Repo)
	if err != nil {
		return err
	}
	delayD, err := time.ParseDuration(delay)
	if err != nil {
		return err
	}
	w := s.WH.Replica("serverconfig-webhook-sigterm", "serverconfig-webhook-e2e-sigterm")
	w.ShutdownDelay = delay
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	body, want, err := s.loadReview(ctx, faultNS, "mlserver", "mlserver")
	if err != nil {
		return err
	}
	client, _ := WebhookClient([][]byte{w.CA.CertPEM}, nil)

	// the readiness probe: out of rotation after threshold failures in a row
	var inRotation atomic.Bool
	inRotation.Store(true)
	var notReadyAt, removedAt atomic.Int64
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go func() {
		fails := 0
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-probeCtx.Done():
				return
			case <-t.C:
			}
			c := http.Client{Timeout: 2 * time.Second}
			resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", w.MetricsPort))
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				resp.Body.Close()
			}
			if ok {
				fails = 0
				continue
			}
			if fails == 0 {
				notReadyAt.CompareAndSwap(0, time.Now().UnixNano())
			}
			if fails++; fails >= threshold && inRotation.Load() {
				inRotation.Store(false)
				removedAt.Store(time.Now().UnixNano())
			}
		}
	}()
	load := &OpenLoad{URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", w.Port), Client: client, Rate: faultLoadRate,
		Body: body, Want: want, Route: inRotation.Load}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	done := make(chan struct{})
	go func() { load.Run(loadCtx); close(done) }()
	time.Sleep(3 * time.Second)

	pid := w.Pid()
	inFlightAtTerm := load.InFlight.Load()
	startedAtTerm := load.Figures().Started
	tTerm := time.Now()
	util.Step("%s: SIGTERM to pid %d (%d requests in flight)", sc, pid, inFlightAtTerm)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	// when does the listener refuse new connections?
	var refusedAfter time.Duration
	var mu sync.Mutex
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for time.Since(tTerm) < delayD+30*time.Second {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", w.Port), 500*time.Millisecond)
			if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				time.Sleep(50 * time.Millisecond) // busy, not refused: try again
				continue
			}
			if err != nil {
				mu.Lock()
				refusedAfter = time.Since(tTerm)
				mu.Unlock()
				return
			}
			c.Close()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	exited := util.PollEvery(delayD+40*time.Second, 50*time.Millisecond, func() error {
		if d, _ := w.Proc.Exited(); !d {
			return fmt.Errorf("still running")
		}
		return nil
	})
	tExit := time.Since(tTerm)
	_, exitErr := w.Proc.Exited()
	stopLoad()
	<-done
	stopProbe()
	// The listener may close only a moment before the process exits; once
	// it has exited, the next dial is refused at once, so let the dialer
	// see that rather than read its result mid-sleep (CI of 2026-12-01 read
	// 0 s, never refused, after an exit 0.1 s past the delay).
	if exited == nil {
		select {
		case <-probeDone:
		case <-time.After(5 * time.Second):
		}
	}
	f := load.Figures()
	mu.Lock()
	refused := refusedAfter
	mu.Unlock()
	ms := func(ns int64) string {
		if ns == 0 {
			return "never"
		}
		return fmt.Sprintf("%.1f s", time.Unix(0, ns).Sub(tTerm).Seconds())
	}
	during := f.Started - startedAtTerm

	s.r.Check(checkName(sc, "zero-failed-requests"), exited == nil && f.Failed == 0 && f.OK > 0 && during > 0,
		"open loop at %d/s; %d in flight at SIGTERM, %d more sent to the draining process before the probe (every %s, %d failures) took it out of rotation at %s (readyz 503 seen at %s): %s",
		faultLoadRate, inFlightAtTerm, during, period, threshold, ms(removedAt.Load()), ms(notReadyAt.Load()), f)
	s.r.Check(checkName(sc, "refuses-after-delay"), refused > 0 && refused >= delayD-500*time.Millisecond,
		"new connections refused %.1f s after SIGTERM (--shutdown-delay %s)", refused.Seconds(), delay)
	s.r.Check(checkName(sc, "clean-exit"), exited == nil && exitErr == nil,
		"exited %.1f s after SIGTERM, status %v", tExit.Seconds(), exitErr)
	util.Step("FIGURE %s: %d failed of %d requests (%d in flight at SIGTERM, %d sent during the drain); refused after %.1f s; exit after %.1f s",
		sc, f.Failed, f.Started, inFlightAtTerm, during, refused.Seconds(), tExit.Seconds())
	return nil
}
