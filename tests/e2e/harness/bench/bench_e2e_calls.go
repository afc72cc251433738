package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/scenarios"
	"serverconfig-webhook/e2e/harness/util"
)

// Benchmark 4 of issue 6 (no API calls on the hot path), measured during
// `e2e bench`: the webhook's own cache-miss counter, and every request the
// API server received from a ServiceAccount identity (the webhook is the
// only one: kube-controller-manager and the bench use certificates in
// system:masters), from an audit log the bench turns on. Also the
// admission-time figures the webhook and the API server export.

// enableAudit writes an audit policy that records, at Metadata level, only
// requests from ServiceAccounts, and points kube-apiserver at it. Returns
// the audit log path.
func enableAudit(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return "", err
	}
	policy := filepath.Join(dir, "audit-policy.yaml")
	const body = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: Metadata
    users: ["` + controlplane.KyvernoUser + `"]
  - level: None
`
	if err := os.WriteFile(policy, []byte(body), 0o644); err != nil {
		return "", err
	}
	log := filepath.Join(dir, "logs", "audit.log")
	controlplane.ExtraAPIServerArgs = []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + log,
		"--audit-log-format=json",
		"--audit-log-maxbackup=0",
	}
	return log, nil
}

// counters: monotonic metrics read before and after each measured round.
type counters struct {
	whAdmissions, whCacheMisses    float64
	whUnchanged                    float64 // admissions answered without a patch
	whDurSum, whDurCount           float64
	apiWebhookSum, apiWebhookCount float64
	apiPolicySum, apiPolicyCount   float64
	// CPU seconds (user + system) used by each process
	cpuAPIServer, cpuEtcd, cpuWebhook, cpuClient float64
	cpuKyverno                                   float64
}

func (a counters) minus(b counters) counters {
	return counters{
		a.whAdmissions - b.whAdmissions, a.whCacheMisses - b.whCacheMisses, a.whUnchanged - b.whUnchanged,
		a.whDurSum - b.whDurSum, a.whDurCount - b.whDurCount,
		a.apiWebhookSum - b.apiWebhookSum, a.apiWebhookCount - b.apiWebhookCount,
		a.apiPolicySum - b.apiPolicySum, a.apiPolicyCount - b.apiPolicyCount,
		a.cpuAPIServer - b.cpuAPIServer, a.cpuEtcd - b.cpuEtcd, a.cpuWebhook - b.cpuWebhook, a.cpuClient - b.cpuClient,
		a.cpuKyverno - b.cpuKyverno,
	}
}

func (a counters) plus(b counters) counters {
	return counters{
		a.whAdmissions + b.whAdmissions, a.whCacheMisses + b.whCacheMisses, a.whUnchanged + b.whUnchanged,
		a.whDurSum + b.whDurSum, a.whDurCount + b.whDurCount,
		a.apiWebhookSum + b.apiWebhookSum, a.apiWebhookCount + b.apiWebhookCount,
		a.apiPolicySum + b.apiPolicySum, a.apiPolicyCount + b.apiPolicyCount,
		a.cpuAPIServer + b.cpuAPIServer, a.cpuEtcd + b.cpuEtcd, a.cpuWebhook + b.cpuWebhook, a.cpuClient + b.cpuClient,
		a.cpuKyverno + b.cpuKyverno,
	}
}

type callCounter struct {
	auditLog string
}

// snapshot reads the webhook's /metrics and the API server's /metrics.
func (c *callCounter) snapshot(s *scenarios.Suite, kyverno *util.Proc) counters {
	var k counters
	k.cpuKyverno = util.ProcCPU(kyverno)
	k.cpuAPIServer = util.ProcCPU(s.CP.APIServer)
	k.cpuEtcd = util.ProcCPU(s.CP.Etcd)
	k.cpuWebhook = util.ProcCPU(s.WH.Proc)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		k.cpuClient = util.TimevalSeconds(ru.Utime) + util.TimevalSeconds(ru.Stime)
	}
	wh := fetchText(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.WH.MetricsPort))
	k.whAdmissions = metricSum(wh, "serverconfig_webhook_admissions_total")
	k.whCacheMisses = metricSum(wh, "serverconfig_webhook_cache_misses_total")
	k.whUnchanged = metricSum(wh, "serverconfig_webhook_admissions_total", `outcome="unchanged"`)
	k.whDurSum = metricSum(wh, "serverconfig_webhook_admission_duration_seconds_sum")
	k.whDurCount = metricSum(wh, "serverconfig_webhook_admission_duration_seconds_count")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := s.CP.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err == nil {
		api := string(raw)
		hook := `name="` + webhookName(s) + `"`
		k.apiWebhookSum = metricSum(api, "apiserver_admission_webhook_admission_duration_seconds_sum", hook, `operation="CREATE"`)
		k.apiWebhookCount = metricSum(api, "apiserver_admission_webhook_admission_duration_seconds_count", hook, `operation="CREATE"`)
		k.apiPolicySum = metricSum(api, "apiserver_mutating_admission_policy_check_duration_seconds_sum")
		k.apiPolicyCount = metricSum(api, "apiserver_mutating_admission_policy_check_duration_seconds_count")
	}
	return k
}

func webhookName(s *scenarios.Suite) string {
	hooks, _ := s.MWC.Object["webhooks"].([]any)
	if len(hooks) > 0 {
		if h, ok := hooks[0].(map[string]any); ok {
			if n, ok := h["name"].(string); ok {
				return n
			}
		}
	}
	return ""
}

func fetchText(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricSum adds up the samples of a metric (all label sets whose line
// contains every one of the given substrings) in a Prometheus/OpenMetrics
// text exposition.
func metricSum(text, name string, has ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || len(line) <= len(name) {
			continue
		}
		if c := line[len(name)]; c != '{' && c != ' ' {
			continue
		}
		ok := true
		for _, h := range has {
			if !strings.Contains(line, h) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		// the value follows the name, or the label set when there is one
		rest := line[len(name):]
		if i := strings.LastIndex(rest, "}"); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// auditEvent: the fields of an audit.k8s.io/v1 Event the bench reads.
type auditEvent struct {
	Stage    string    `json:"stage"`
	Verb     string    `json:"verb"`
	Received time.Time `json:"requestReceivedTimestamp"`
	User     struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestURI string `json:"requestURI"`
}

// attribute counts the audit log's requests per mode: those received inside
// one of the mode's measured windows (a watch counts when it starts, any
// other request when it completes).
func (c *callCounter) attribute(res map[string]*modeResult) error {
	f, err := os.Open(c.auditLog)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	for _, m := range res {
		m.Requests = map[string]int{}
		m.KyvernoRequests = map[string]int{}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if (e.Verb == "watch" && e.Stage != "ResponseStarted") || (e.Verb != "watch" && e.Stage != "ResponseComplete") {
			continue
		}
		key := e.Verb + " "
		if e.ObjectRef != nil {
			key += e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				key += "/" + e.ObjectRef.Subresource
			}
		} else {
			key += e.RequestURI
		}
		for _, m := range res {
			into := m.Requests
			if e.User.Username == controlplane.KyvernoUser {
				into = m.KyvernoRequests
			}
			for _, r := range m.rounds {
				if !e.Received.Before(r.start) && !e.Received.After(r.end) {
					into[key]++
				}
			}
		}
	}
	return sc.Err()
}
