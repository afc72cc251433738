package scenarios

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/ptr"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The Lease's timing as the webhook ships it (docs/reference.md,
// --lease-duration): duration 15 s, renewals and retries every 3 s.
const (
	skewLeaseDuration = 15 * time.Second
	skewRetry         = 3 * time.Second
	// the skewed replica's wall clock is this far off, more than the duration
	skewSeconds = 20
)

// scenarioFaultLeaseClockSkew: two `serve --sync` replicas, the second with
// its wall clock shifted by libfaketime (monotonic clock untouched), each
// with its own API user so that the audit log tells their writes apart. For
// a clock 20 s ahead and one 20 s behind (more than the lease duration), the
// second starts while the first holds the Lease and the team namespaces keep
// the sync loop writing placeholders: the leader gauges never read 1 at once
// (sampled every 100 ms), the audit log's placeholder writes of the two
// never interleave, the Lease is not taken from its live holder (holder and
// leaseTransitions unchanged); after a SIGKILL of the holder the skewed one
// takes over within the duration plus two retries, whatever its clock says.
// The suite's replica serves admissions only meanwhile.
func scenarioFaultLeaseClockSkew(ctx context.Context, s *Suite) error {
	lib, err := controlplane.LibFaketime()
	if err != nil {
		return err
	}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if s.CP.AuditLog == "" {
		return fmt.Errorf("the API server writes no audit log")
	}
	nss := []string{"lease-skew-0", "lease-skew-1"}
	for _, ns := range nss {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// the suite's replica gives the Lease up (SIGTERM) and comes back
	// without --sync on the same port: admissions keep being answered
	s.WH.Stop()
	front := s.WH.WithoutSync()
	if err := front.Start(); err != nil {
		return err
	}
	var failed error
	for _, skew := range []int{skewSeconds, -skewSeconds} {
		if failed = leaseSkewCase(ctx, s, lib, skew, nss); failed != nil {
			break
		}
	}
	front.Stop()
	if err := s.WH.Start(); err != nil {
		return err
	}
	if failed != nil {
		return failed
	}
	// back to the suite's replica, which removes the scenario's placeholders
	err = util.Poll(30*time.Second, func() error {
		h, _, err := s.leaseHolder(ctx)
		if err != nil {
			return err
		}
		if h != "serverconfig-webhook-e2e" {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the suite's webhook did not take the Lease back: %w", err)
	}
	for i, ns := range nss {
		for _, c := range []string{"ahead", "behind"} {
			name := fmt.Sprintf("skew-%s-%d", c, i)
			if err := s.deleteSC(ctx, ns, name); err != nil {
				return err
			}
			if _, _, err := s.waitSC(ctx, k8s.ControllerNS, name, false, 30*time.Second); err != nil {
				return fmt.Errorf("placeholder left behind: %w", err)
			}
		}
	}
	return nil
}

// skewSample is one 100 ms reading of both replicas and the Lease.
type skewSample struct {
	at             time.Time
	plain, skewed  float64 // the leader gauges (-1: no answer)
	holder         string
	transitions    int32
	leaseReadError bool
}

// leaseSkewCase runs one skew (seconds, + ahead): the plain replica holds,
// the skewed one starts, then the plain one is killed.
func leaseSkewCase(ctx context.Context, s *Suite, lib string, skew int, nss []string) error {
	label := "ahead"
	if skew < 0 {
		label = "behind"
	}
	tag := "fault-lease-clock-skew/" + label
	const gauge = "serverconfig_webhook_sync_leader"
	idP, idS := "lease-skew-plain-"+label, "lease-skew-"+label
	userP, userS := "e2e-webhook-"+idP, "e2e-webhook-"+idS
	kcP, err := s.CP.WebhookKubeconfigAs(userP)
	if err != nil {
		return err
	}
	kcS, err := s.CP.WebhookKubeconfigAs(userS)
	if err != nil {
		return err
	}
	plain := s.WH.Replica("serverconfig-webhook-"+idP, idP)
	plain.Kubeconfig = kcP
	skewed := s.WH.Replica("serverconfig-webhook-"+idS, idS)
	skewed.Kubeconfig = kcS
	skewed.ExtraEnv = controlplane.FaketimeEnv(lib, skew)

	since := time.Now()
	if err := plain.Start(); err != nil {
		return err
	}
	defer func() { plain.Proc.Kill() }()
	err = util.Poll(20*time.Second, func() error {
		h, _, err := s.leaseHolder(ctx)
		if err != nil {
			return err
		}
		if h != idP || metricValue(plain.Metrics(), gauge, "") != 1 {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: the first replica did not take the Lease: %w", label, err)
	}
	_, l, err := s.leaseHolder(ctx)
	if err != nil {
		return err
	}
	transitions0 := ptr.Deref(l.Spec.LeaseTransitions, 0)

	// the sync loop keeps writing: every 500 ms one team ServerConfig is
	// created or deleted (each namespace's in turn), so its placeholder is
	// created or deleted by whoever leads
	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		exists := make([]bool, len(nss))
		for i := 0; wctx.Err() == nil; i++ {
			k := i % len(nss)
			name := fmt.Sprintf("skew-%s-%d", label, k)
			if exists[k] {
				_ = s.deleteSC(wctx, nss[k], name)
			} else {
				_ = s.Apply(wctx, s.teamConfig(nss[k], name))
			}
			exists[k] = !exists[k]
			select {
			case <-wctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { stopWriter(); wg.Wait() }()

	// the second replica, its wall clock skewed
	logStart := fileSize(skewedLog(skewed))
	started := time.Now()
	if err := skewed.Start(); err != nil {
		return err
	}
	defer skewed.Stop()
	ready := time.Now()
	ts, err := firstLogTimestamp(skewedLog(skewed), logStart)
	off := ts.Sub(started)
	lo, hi := time.Duration(skew)*time.Second-time.Second, time.Duration(skew)*time.Second+ready.Sub(started)+time.Second
	if !s.r.Check(tag+"/skew-applies", err == nil && off >= lo && off <= hi,
		"the skewed replica's first log line is stamped %s, %+.1f s from the real time it started (FAKETIME %+d s) %v", ts.Format(time.RFC3339Nano), off.Seconds(), skew, err) {
		return nil
	}

	// sample both gauges and the Lease every 100 ms: while the plain
	// replica lives (longer than the duration and a retry: an expiry judged
	// on the skewed clock would show), then until the skewed one leads
	var mu sync.Mutex
	var samples []skewSample
	sample := func() skewSample {
		sm := skewSample{at: time.Now(), plain: metricValue(plain.Metrics(), gauge, ""), skewed: metricValue(skewed.Metrics(), gauge, "")}
		h, l, err := s.leaseHolder(ctx)
		sm.holder, sm.leaseReadError = h, err != nil
		if l != nil {
			sm.transitions = ptr.Deref(l.Spec.LeaseTransitions, 0)
		}
		mu.Lock()
		samples = append(samples, sm)
		mu.Unlock()
		return sm
	}
	alive := time.Now().Add(skewLeaseDuration + skewRetry + 2*time.Second)
	for time.Now().Before(alive) {
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	liveSamples := append([]skewSample(nil), samples...)
	mu.Unlock()
	stolen := 0
	for _, sm := range liveSamples {
		if sm.holder != idP || sm.transitions != transitions0 || sm.skewed == 1 {
			stolen++
		}
	}
	s.r.Check(tag+"/not-stolen-from-live-holder", stolen == 0,
		"%d of %d samples over %s had another holder, leaseTransitions other than %d, or the skewed replica leading",
		stolen, len(liveSamples), secs(skewLeaseDuration+skewRetry+2*time.Second), transitions0)

	killed := time.Now()
	util.Step("%s: SIGKILL the holder %s", tag, idP)
	plain.Proc.Kill()
	plain.Proc = nil
	var took time.Duration
	var last skewSample
	err = util.PollEvery(45*time.Second, 100*time.Millisecond, func() error {
		last = sample()
		if last.holder != idS || last.skewed != 1 {
			return fmt.Errorf("holder %q, skewed gauge %v", last.holder, last.skewed)
		}
		took = time.Since(killed)
		return nil
	})
	limit := skewLeaseDuration + 2*skewRetry + time.Second
	early := skewLeaseDuration - skewRetry - time.Second
	s.r.Check(tag+"/takeover-after-sigkill", err == nil && took <= limit && took >= early,
		"%s took over %s after the SIGKILL of %s (lease 15 s, retries every 3 s; want %s to %s whatever its clock says) %v",
		idS, secs(took), idP, secs(early), secs(limit), err)
	util.Step("%s: takeover after %s", tag, secs(took))

	// the renewTime the skewed holder writes carries its clock
	_, l, err = s.leaseHolder(ctx)
	var renewOff float64
	if err == nil && l.Spec.RenewTime != nil {
		renewOff = l.Spec.RenewTime.Sub(time.Now()).Seconds()
	}
	s.r.Check(tag+"/skewed-renewtime", err == nil && l.Spec.RenewTime != nil && renewOff > float64(skew)-skewRetry.Seconds()-2 && renewOff < float64(skew)+2,
		"the skewed holder's renewTime is %+.1f s from the real time (FAKETIME %+d s) %v", renewOff, skew, err)

	// a few writes as the new leader, then the audit log
	time.Sleep(3 * time.Second)
	stopWriter()
	wg.Wait()
	mu.Lock()
	overlap, n := countOverlap(samples), len(samples)
	mu.Unlock()
	s.r.Check(tag+"/leader-gauges-never-overlap", overlap == 0,
		"%d of %d samples (every 100 ms) had both replicas' %s at 1", overlap, n, gauge)

	evs, err := s.CP.AuditEvents(since, func(e controlplane.AuditEvent) bool {
		return e.ObjectRef.Resource == "serverconfigs" && e.ObjectRef.Namespace == k8s.ControllerNS &&
			(e.User.Username == userP || e.User.Username == userS) &&
			(e.Verb == "create" || e.Verb == "update" || e.Verb == "patch" || e.Verb == "delete")
	})
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].StageTimestamp.Before(evs[j].StageTimestamp) })
	byP, byS, interleaved, firstS, firstAt := 0, 0, 0, -1, time.Time{}
	for i, e := range evs {
		if e.User.Username == userS {
			byS++
			if firstS < 0 {
				firstS, firstAt = i, e.StageTimestamp
			}
		} else {
			byP++
			if firstS >= 0 {
				interleaved++
			}
		}
	}
	// the writes around the skewed replica's first, for the report
	var order []string
	for i := max(firstS-3, 0); firstS >= 0 && i < min(firstS+4, len(evs)); i++ {
		who := "plain"
		if evs[i].User.Username == userS {
			who = "skewed"
		}
		order = append(order, fmt.Sprintf("%s %s %s/%s", evs[i].StageTimestamp.Format("15:04:05.000"), who, evs[i].Verb, evs[i].ObjectRef.Name))
	}
	s.r.Check(tag+"/writes-never-interleave", err == nil && byP > 0 && byS > 0 && interleaved == 0 && !firstAt.Before(killed),
		"placeholder writes in the audit log: %d by the plain replica, %d by the skewed one (first %s, the SIGKILL at %s), %d of the plain one's after the skewed one's first; around it: %s %v",
		byP, byS, firstAt.Format("15:04:05.000"), killed.Format("15:04:05.000"), interleaved, strings.Join(order, "; "), err)
	return nil
}

func countOverlap(samples []skewSample) int {
	n := 0
	for _, sm := range samples {
		if sm.plain == 1 && sm.skewed == 1 {
			n++
		}
	}
	return n
}

func skewedLog(w *controlplane.Webhook) string {
	return w.LogDir + "/" + w.ProcName + ".log"
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// firstLogTimestamp is the `timestamp` of the first JSON log line at or
// after offset in the file (the webhook's --log-format=json lines).
func firstLogTimestamp(path string, offset int64) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return time.Time{}, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Timestamp time.Time `json:"timestamp"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && !line.Timestamp.IsZero() {
			return line.Timestamp, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: no JSON log line with a timestamp", path)
}
