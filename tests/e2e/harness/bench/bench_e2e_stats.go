package bench

import (
	"math"
	"sort"
	"time"
)

// Latency and throughput figures of `e2e bench`: per round, pooled per
// mode, and same-round ratios against the mode with nothing registered.

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (rr *roundResult) perSecond() float64 {
	if rr.wall <= 0 {
		return 0
	}
	return float64(len(rr.lat)) / rr.wall.Seconds()
}

func (rr *roundResult) quantile(q float64) time.Duration { return quantile(rr.lat, q) }

// quantile: nearest-rank quantile of l (sorted on a copy).
func quantile(l []time.Duration, q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// modeResult accumulates one mode over the rounds.
type modeResult struct {
	Mode   string
	rounds []*roundResult
	lat    []time.Duration
	delta  counters // summed over the measured rounds
	Check  *Check   // map mode: the policy's correctness check
	// requests by the webhook's identity inside this mode's measured
	// windows (audit log), "verb resource" -> count
	Requests map[string]int
	// the same for Kyverno's identity (controlplane.KyvernoUser)
	KyvernoRequests map[string]int
}

func (m *modeResult) add(rr *roundResult, before, after counters) {
	m.rounds = append(m.rounds, rr)
	m.lat = append(m.lat, rr.lat...)
	m.delta = m.delta.plus(after.minus(before))
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// summary is the JSON object of one mode. Ratios are medians over rounds of
// (this mode's figure / the none mode's figure of the same round), so
// drift between rounds cancels; the pooled ratios are given beside them.
func (m *modeResult) summary(b *bench, base *modeResult) map[string]any {
	var tput, p50s, p99s []float64
	for _, r := range m.rounds {
		tput = append(tput, round3(r.perSecond()))
		p50s = append(p50s, round3(ms(r.quantile(0.50))))
		p99s = append(p99s, round3(ms(r.quantile(0.99))))
	}
	var mean float64
	for _, d := range m.lat {
		mean += ms(d)
	}
	if len(m.lat) > 0 {
		mean /= float64(len(m.lat))
	}
	out := map[string]any{
		"bench":                "e2e-create",
		"mode":                 m.Mode,
		"kubernetes":           b.s.CP.GitVersion,
		"clients":              b.clients,
		"rounds":               len(m.rounds),
		"creates_per_round":    b.o.Creates,
		"creates":              len(m.lat),
		"namespaces":           len(b.nss),
		"webhook_flags":        b.s.Cfg.WebhookFlags,
		"webhook_sync_loop":    b.o.Sync && b.s.Cfg.WebhookFlags == "shipped",
		"creates_per_s":        round3(median(tput)),
		"p50_ms":               round3(ms(quantile(m.lat, 0.50))),
		"p99_ms":               round3(ms(quantile(m.lat, 0.99))),
		"mean_ms":              round3(mean),
		"rounds_creates_per_s": tput,
		"rounds_p50_ms":        p50s,
		"rounds_p99_ms":        p99s,
	}
	if base != nil && base != m && len(base.rounds) == len(m.rounds) {
		var rp50, rp99, rtput []float64
		for i, r := range m.rounds {
			o := base.rounds[i]
			rp50 = append(rp50, ratio(ms(r.quantile(0.50)), ms(o.quantile(0.50))))
			rp99 = append(rp99, ratio(ms(r.quantile(0.99)), ms(o.quantile(0.99))))
			rtput = append(rtput, ratio(r.perSecond(), o.perSecond()))
		}
		out["ratio_p50_vs_none"] = round3(median(rp50))
		out["ratio_p99_vs_none"] = round3(median(rp99))
		out["ratio_creates_per_s_vs_none"] = round3(median(rtput))
		out["rounds_ratio_p50_vs_none"] = rp50
		out["pooled_ratio_p50_vs_none"] = round3(ratio(ms(quantile(m.lat, 0.5)), ms(quantile(base.lat, 0.5))))
		out["pooled_ratio_p99_vs_none"] = round3(ratio(ms(quantile(m.lat, 0.99)), ms(quantile(base.lat, 0.99))))
		// the latency the mode adds (issue 18 compares these between
		// admission controllers): pooled quantile minus none's
		out["pooled_added_p50_ms_vs_none"] = round3(ms(quantile(m.lat, 0.5)) - ms(quantile(base.lat, 0.5)))
		out["pooled_added_p99_ms_vs_none"] = round3(ms(quantile(m.lat, 0.99)) - ms(quantile(base.lat, 0.99)))
	}
	// CPU time per create (user + system, all rounds): robust to the other
	// load on a shared machine, unlike wall-clock latency
	d := m.delta
	if c := float64(len(m.lat)); c > 0 {
		out["cpu_ms_per_create"] = map[string]float64{
			"kube-apiserver": round3(d.cpuAPIServer * 1000 / c),
			"etcd":           round3(d.cpuEtcd * 1000 / c),
			"webhook":        round3(d.cpuWebhook * 1000 / c),
			"kyverno":        round3(d.cpuKyverno * 1000 / c),
			"bench-client":   round3(d.cpuClient * 1000 / c),
			"server-side":    round3((d.cpuAPIServer + d.cpuEtcd + d.cpuWebhook + d.cpuKyverno) * 1000 / c),
		}
		if base != nil && base != m && len(base.lat) > 0 {
			bd := base.delta
			out["ratio_server_cpu_per_create_vs_none"] = ratio(
				(d.cpuAPIServer+d.cpuEtcd+d.cpuWebhook+d.cpuKyverno)/c,
				(bd.cpuAPIServer+bd.cpuEtcd+bd.cpuWebhook+bd.cpuKyverno)/float64(len(base.lat)))
		}
	}
	switch m.Mode {
	case modeWebhook, modeWebhookNoop:
		out["webhook_admissions"] = d.whAdmissions
		out["webhook_admissions_without_patch"] = d.whUnchanged
		out["webhook_cache_misses"] = d.whCacheMisses
		out["webhook_server_mean_ms"] = round3(ratio(d.whDurSum*1000, d.whDurCount))
		out["apiserver_webhook_call_mean_ms"] = round3(ratio(d.apiWebhookSum*1000, d.apiWebhookCount))
	case modeKyverno:
		out["kyverno_check"] = m.Check
	case modeMAP, modeMAPJSON:
		out["apiserver_policy_check_mean_ms"] = round3(ratio(d.apiPolicySum*1000, d.apiPolicyCount))
		out["apiserver_policy_checks"] = d.apiPolicyCount
		out["map_check"] = m.Check
	}
	// benchmark 4: what the webhook's identity asked the API server while
	// this mode's creates ran; "hot path" = the lookups an admission makes
	// on a cache miss (GET of a Server or ServerConfig)
	hot := 0
	for k, n := range m.Requests {
		if k == "get servers" || k == "get serverconfigs" {
			hot += n
		}
	}
	out["webhook_api_requests"] = m.Requests
	out["webhook_api_requests_hot_path"] = hot
	// the admission controller of the mode (issue 18): its CPU seconds per
	// 1,000 admissions (every create is one admission), its API requests per
	// admission (audit log, its own identity) and its peak resident set
	c := float64(len(m.lat))
	switch m.Mode {
	case modeWebhook, modeWebhookNoop:
		n := 0
		for _, v := range m.Requests {
			n += v
		}
		out["admission_controller"] = map[string]any{
			"process":                    "serverconfig-webhook",
			"cpu_s_per_1000_admissions":  round3(ratio(d.cpuWebhook*1000, c)),
			"api_requests_per_admission": round3(ratio(float64(n), c)),
			"peak_rss_bytes":             b.peakRSS["webhook"],
		}
	case modeKyverno:
		n := 0
		for _, v := range m.KyvernoRequests {
			n += v
		}
		out["kyverno_api_requests"] = m.KyvernoRequests
		out["admission_controller"] = map[string]any{
			"process":                    "kyverno",
			"cpu_s_per_1000_admissions":  round3(ratio(d.cpuKyverno*1000, c)),
			"api_requests_per_admission": round3(ratio(float64(n), c)),
			"peak_rss_bytes":             b.peakRSS["kyverno"],
		}
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round3(a / b)
}
