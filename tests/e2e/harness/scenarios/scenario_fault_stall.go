package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"serverconfig-webhook/e2e/harness/util"
)

const (
	fsNS     = "fault-stall"
	fsConfig = "fs-config"
	fsServer = "fs"
)

// metricTotal sums every sample of a /metrics family whose labels contain
// label (all samples with "").
func metricTotal(text, name, label string) float64 {
	total := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		var v float64
		f := strings.Fields(line)
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			total += v
		}
	}
	return total
}

// scenarioFaultWatchStall: every connection between the webhook and the API
// server goes silent at once (frozen in the balancer the webhook talks
// through: no bytes, no close, as a half-open connection or a stuck
// middlebox), while new connections work. A ServerConfig change made right
// after must reach the answers within the staleness bound: the watches
// notice that neither an event, a bookmark nor the end of the watch came
// within their window, and reviews ask the API server until a new list
// completes. Figures: staleness, admissions answered from the cache while
// it was not trusted, the API calls the hot path makes once the watch is
// back (0).
func scenarioFaultWatchStall(ctx context.Context, s *Suite) error {
	const sc = "fault-watch-stall"
	f, cleanup, err := s.newStaleFixture(ctx, fsNS, fsConfig, fsServer)
	if err != nil {
		return err
	}
	defer cleanup()
	const restarts, untrusted = "serverconfig_webhook_watch_restarts_total", "serverconfig_webhook_untrusted_lookups_total"
	before := s.WH.Metrics()
	frozen := s.CP.VIP.Freeze()
	util.Step("%s: froze %d connections between the webhook and kube-apiserver", sc, frozen)
	took, tally, err := f.changeWhileAdmitting(ctx, "-v1", "fs-bg-", 60*time.Second)
	s.r.Check(checkName(sc, "change-seen-within-bound"), err == nil && frozen > 0 && took <= stalenessBound,
		"with the %d connections the webhook had to kube-apiserver silent, a ServerConfig change reached its answers %s after it was written (bound %s) %v",
		frozen, took.Round(time.Millisecond), stalenessBound, err)
	s.r.Check(checkName(sc, "no-stale-after-seen"), tally.ok(), "dry-run creates through the API server meanwhile: %s", tally.describe(f.changed))

	// the stall was noticed as one, and what answered meanwhile
	var after string
	werr := util.Poll(30*time.Second, func() error {
		after = s.WH.Metrics()
		if metricTotal(after, restarts, `reason="stalled"`) <= metricTotal(before, restarts, `reason="stalled"`) {
			return fmt.Errorf("no stalled watch counted yet")
		}
		return nil
	})
	count := func(answer string) float64 {
		l := `answer="` + answer + `"`
		return metricTotal(after, untrusted, l) - metricTotal(before, untrusted, l)
	}
	s.r.Check(checkName(sc, "stall-counted"), werr == nil,
		"watch_restarts_total{reason=\"stalled\"} went from %.0f to %.0f %v",
		metricTotal(before, restarts, `reason="stalled"`), metricTotal(after, restarts, `reason="stalled"`), werr)

	// once the watches are back (a new list over a new connection), the hot
	// path asks the API server nothing again, and a change arrives by watch
	var healthy error
	var quiet float64
	herr := util.Poll(30*time.Second, func() error {
		m0 := metricTotal(s.WH.Metrics(), untrusted, "")
		for i := 0; i < 20; i++ {
			if err := f.probe(f.images("-v1")); err != nil {
				return err
			}
		}
		quiet = metricTotal(s.WH.Metrics(), untrusted, "") - m0
		if quiet != 0 {
			return fmt.Errorf("%.0f of 20 reviews still looked past the cache", quiet)
		}
		return nil
	})
	back, healthy := f.change(ctx, "-v2", 20*time.Second)
	s.r.Check(checkName(sc, "watch-back"), herr == nil && healthy == nil && back <= 2*time.Second,
		"after the stall: 20 reviews in a row answered from the cache alone (%v), and the next change reached the answers %s after it was written (by watch; bound 2 s) %v",
		herr, back.Round(time.Millisecond), healthy)
	util.Step("FIGURE %s: change during a silent stall seen after %s (bound %s); %d stale admissions through the API server; untrusted lookups: %.0f GET, %.0f recent GET, %.0f cache; after the watch was back: %.0f API calls for 20 reviews, change by watch in %s",
		sc, took.Round(time.Millisecond), stalenessBound, tally.staleCount(), count("get"), count("recent_get"), count("cache"), quiet, back.Round(time.Millisecond))
	return f.restore(ctx)
}
