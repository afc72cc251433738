package scenarios

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

const (
	ftNS     = "fault-throttle"
	ftConfig = "ft-config"
	ftServer = "ft"
	// ftWorkloads more Servers whose StatefulSets the sync loop rolls out
	ftWorkloads = 8
	// ftHold is how long each throttling phase lasts
	ftHold = 15 * time.Second
	// the API server's priority and fairness objects the scenario adds
	ftLevel  = "e2e-jail"
	ftSchema = "e2e-throttle-webhook"
	// ftRejectedPerSecond bounds the webhook's requests the API server
	// rejects per second while all of them are throttled: what its backoffs allow
	// (watch relists 2 s apart per kind, direct GETs paused 1 s after a
	// failure, the Lease every renew interval, each with the client's
	// retries), with room; a client retrying at once would be far above
	ftRejectedPerSecond = 25.0
	// ftAttemptsPerWorkload bounds the sync loop's write attempts per
	// StatefulSet while its writes are rejected for ftHold: its backoff
	// doubles from 2 s, and kube's client retries a 429 a few times
	ftAttemptsPerWorkload = 16
)

// jailWebhook puts the webhook's user into a priority level with no
// nominal seats, no borrowing and rejection (a "jail": kube-apiserver still
// runs one of its requests when none is running, and answers 429 to every
// one that arrives meanwhile), for the requests the flow schema matches:
// only StatefulSet writes in the scenario's namespace when writesOnly, else
// everything. It waits until the API server has taken the schema in.
func (s *Suite) jailWebhook(ctx context.Context, writesOnly bool) error {
	zero := int32(0)
	pl := &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ftLevel},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
			Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
				NominalConcurrencyShares: &zero, LendablePercent: &zero, BorrowingLimitPercent: &zero,
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject},
			},
		},
	}
	rule := flowcontrolv1.PolicyRulesWithSubjects{
		Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: s.WH.User}}},
	}
	if writesOnly {
		rule.ResourceRules = []flowcontrolv1.ResourcePolicyRule{{
			Verbs: []string{"create", "update", "patch", "delete"}, APIGroups: []string{"apps"},
			Resources: []string{"statefulsets"}, Namespaces: []string{ftNS},
		}}
	} else {
		rule.ResourceRules = []flowcontrolv1.ResourcePolicyRule{{
			Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"},
			Namespaces: []string{"*"}, ClusterScope: true,
		}}
		rule.NonResourceRules = []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}}
	}
	fs := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: ftSchema},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: ftLevel},
			MatchingPrecedence:         100,
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules:                      []flowcontrolv1.PolicyRulesWithSubjects{rule},
		},
	}
	fc := s.CP.Kube.FlowcontrolV1()
	if _, err := fc.PriorityLevelConfigurations().Get(ctx, ftLevel, metav1.GetOptions{}); err != nil {
		if _, err := fc.PriorityLevelConfigurations().Create(ctx, pl, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("priority level: %w", err)
		}
	}
	_ = fc.FlowSchemas().Delete(ctx, ftSchema, metav1.DeleteOptions{})
	if _, err := fc.FlowSchemas().Create(ctx, fs, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("flow schema: %w", err)
	}
	// the API server's flow-control controller has taken the flow schema in
	// once it reports it as not dangling
	return util.Poll(20*time.Second, func() error {
		got, err := fc.FlowSchemas().Get(ctx, ftSchema, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == flowcontrolv1.FlowSchemaConditionDangling && c.Status == flowcontrolv1.ConditionFalse {
				return nil
			}
		}
		return fmt.Errorf("flow schema %s not taken in yet", ftSchema)
	})
}

// freeWebhook removes the flow schema and the priority level.
func (s *Suite) freeWebhook(ctx context.Context) {
	fc := s.CP.Kube.FlowcontrolV1()
	_ = fc.FlowSchemas().Delete(ctx, ftSchema, metav1.DeleteOptions{})
	_ = fc.PriorityLevelConfigurations().Delete(ctx, ftLevel, metav1.DeleteOptions{})
}

// rejectedForWebhook is how many of the webhook's requests the API server
// has rejected through the scenario's flow schema (its /metrics).
func (s *Suite) rejectedForWebhook(ctx context.Context) (float64, error) {
	m, err := s.CP.APIServerMetrics(ctx)
	if err != nil {
		return 0, err
	}
	return metricTotal(m, "apiserver_flowcontrol_rejected_requests_total", `flow_schema="`+ftSchema+`"`), nil
}

// webhookSTSWrites are the audit log's writes of StatefulSets in ns by the
// webhook's user since `since`, per StatefulSet: those the API server
// rejected with 429 and those it accepted.
func (s *Suite) webhookSTSWrites(since time.Time, ns string) (rejected, accepted map[string]int, err error) {
	evs, err := s.CP.AuditEvents(since, func(e controlplane.AuditEvent) bool {
		return e.User.Username == s.WH.User && e.ObjectRef.Resource == "statefulsets" && e.ObjectRef.Namespace == ns &&
			e.ObjectRef.Subresource == "" && (e.Verb == "update" || e.Verb == "patch" || e.Verb == "create") && !e.DryRun()
	})
	if err != nil {
		return nil, nil, err
	}
	rejected, accepted = map[string]int{}, map[string]int{}
	for _, e := range evs {
		switch {
		case e.ResponseStatus.Code == 429:
			rejected[e.ObjectRef.Name]++
		case e.ResponseStatus.Code < 300:
			accepted[e.ObjectRef.Name]++
		}
	}
	return rejected, accepted, nil
}

// scenarioFaultThrottled: the API server's priority and fairness answers
// 429 to the webhook's own requests (jailWebhook). First only its
// StatefulSet writes, with the stand-in stopped so that the sync loop is
// the only writer, while a ServerConfig change is rolled out to 9
// StatefulSets: writes are refused, the sync loop backs off (bounded
// attempts per workload), and in the end every StatefulSet is rolled out
// with exactly one accepted write, throttled or not. Then every request of
// the webhook (lists, watches, GETs, the Lease): reviews sent to the
// webhook are all answered, the rejected requests per second stay bounded,
// and once let through a ServerConfig change reaches the answers within
// the staleness bound. Figures: 429s, attempts, how many rolled out while
// throttled, the rest after, rejected requests per second, staleness.
func scenarioFaultThrottled(ctx context.Context, s *Suite) error {
	const sc = "fault-apiserver-throttled"
	if s.WH.User == "" || s.WH.User == "e2e-admin" {
		return fmt.Errorf("the webhook runs as %q (system:masters is exempt from priority and fairness): the scenario needs the shipped RBAC's ServiceAccount", s.WH.User)
	}
	f, cleanup, err := s.newStaleFixture(ctx, ftNS, ftConfig, ftServer)
	if err != nil {
		return err
	}
	defer cleanup()
	defer s.freeWebhook(context.Background())
	v := f.images
	c, err := s.StartStandInController(ctx, ftNS)
	if err != nil {
		return err
	}
	defer c.Stop()
	names := []string{ftServer}
	for i := 0; i < ftWorkloads; i++ {
		n := fmt.Sprintf("%s-%d", ftServer, i)
		names = append(names, n)
		if err := s.Apply(ctx, k8s.NewServer(ftNS, n, ftConfig, 1, nil)); err != nil {
			return err
		}
	}
	defer func() {
		for _, n := range names[1:] {
			_ = s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ftNS).Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	}()
	for _, n := range names {
		if _, imgs, err := s.waitImages(ctx, ftNS, n, v(""), 60*time.Second); err != nil {
			return fmt.Errorf("StatefulSet %s/%s: %s %v", ftNS, n, imgs, err)
		}
		if _, err := s.settledRV(ctx, ftNS, n); err != nil {
			return err
		}
	}

	// phase 1: the webhook's StatefulSet writes are throttled. The
	// stand-in stops first, so that the sync loop is the only writer (the
	// stand-in's own updates would be admitted with the new images).
	c.Stop()
	since := time.Now()
	if err := s.jailWebhook(ctx, true); err != nil {
		return err
	}
	seen, err := f.change(ctx, "-v1", 20*time.Second)
	if err != nil {
		return fmt.Errorf("the change did not reach the webhook with only its writes throttled: %w", err)
	}
	time.Sleep(ftHold)
	rolledWhileThrottled := s.countImages(ctx, ftNS, names, v("-v1"))
	rejected, accepted, err := s.webhookSTSWrites(since, ftNS)
	if err != nil {
		return err
	}
	maxAttempts, total := 0, 0
	for _, n := range names {
		total += rejected[n]
		maxAttempts = max(maxAttempts, rejected[n]+accepted[n])
	}
	// a priority level with no nominal seats still runs one request at a
	// time when none is running: of a burst of writes, one goes through
	s.r.Check(checkName(sc, "writes-throttled"), total >= len(names)/2,
		"with the webhook's StatefulSet writes in a priority level that rejects (the change reached its caches in %s): %d writes answered 429 in %s; %d of %d StatefulSets rolled out meanwhile",
		seen.Round(time.Millisecond), total, secs(ftHold), rolledWhileThrottled, len(names))
	s.r.Check(checkName(sc, "sync-backs-off"), maxAttempts <= ftAttemptsPerWorkload,
		"at most %d write attempts for one StatefulSet in %s (bound %d): refused %s, accepted %s", maxAttempts, secs(ftHold), ftAttemptsPerWorkload, perName(rejected), perName(accepted))

	tFree := time.Now()
	s.freeWebhook(ctx)
	var rolled time.Duration
	err = util.PollEvery(120*time.Second, 100*time.Millisecond, func() error {
		if n := s.countImages(ctx, ftNS, names, v("-v1")); n != len(names) {
			return fmt.Errorf("%d of %d rolled out", n, len(names))
		}
		rolled = time.Since(tFree)
		return nil
	})
	time.Sleep(3 * time.Second) // a second write would come within the sync loop's backoff
	_, accepted, aerr := s.webhookSTSWrites(since, ftNS)
	once := aerr == nil
	for _, n := range names {
		once = once && accepted[n] == 1
	}
	s.r.Check(checkName(sc, "rolled-out-once"), err == nil && once,
		"all %d StatefulSets had the new images %s after the writes were let through; accepted writes by the webhook per StatefulSet since the change, throttled or not: %s %v %v",
		len(names), rolled.Round(time.Millisecond), perName(accepted), err, aerr)

	// phase 2: every request of the webhook is throttled
	r0, err := s.rejectedForWebhook(ctx)
	if err != nil {
		return err
	}
	if err := s.jailWebhook(ctx, false); err != nil {
		return err
	}
	m0 := s.WH.Metrics()
	load := &OpenLoad{URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", s.WH.Port), Client: f.client, Rate: controlPlaneFaultRate,
		Body: f.body, Want: imageList(v("-v1"))}
	loadCtx, stopLoad := context.WithTimeout(ctx, ftHold)
	defer stopLoad()
	tJail := time.Now()
	load.Run(loadCtx)
	jailed := time.Since(tJail)
	r1, err := s.rejectedForWebhook(ctx)
	if err != nil {
		return err
	}
	m1 := s.WH.Metrics()
	fig := load.Figures()
	const untrusted = "serverconfig_webhook_untrusted_lookups_total"
	s.r.Check(checkName(sc, "reviews-answered-from-caches"), fig.Failed == 0 && fig.OK > 0 && fig.HTTP2 == fig.OK,
		"with every request of the webhook throttled (%.0f refused in %s): %s; untrusted lookups answered from the cache: %.0f",
		r1-r0, secs(jailed), fig, metricTotal(m1, untrusted, `answer="cache"`)-metricTotal(m0, untrusted, `answer="cache"`))
	rate := (r1 - r0) / jailed.Seconds()
	// the level runs one request when none is running: on a quiet machine
	// the webhook's requests may never overlap and none is refused, so the
	// phase checks the bound and the answers, not that refusals happened
	s.r.Check(checkName(sc, "requests-bounded"), rate <= ftRejectedPerSecond,
		"the API server refused %.1f of the webhook's requests per second (bound %.0f)", rate, ftRejectedPerSecond)
	s.freeWebhook(ctx)
	tFree2 := time.Now()
	after, err := f.change(ctx, "-v2", 60*time.Second)
	s.r.Check(checkName(sc, "change-after-throttling-seen"), err == nil && after <= stalenessBound,
		"a ServerConfig change written %s after the throttling ended reached the webhook %s later (bound %s) %v",
		f.changed.Sub(tFree2).Round(time.Millisecond), after.Round(time.Millisecond), stalenessBound, err)
	util.Step("FIGURE %s: writes throttled: %d 429s, at most %d attempts per StatefulSet in %s, %d of %d rolled out meanwhile, the rest %s after; all throttled: %.1f rejected/s, %d reviews %d failed p99 %s; change seen %s after",
		sc, total, maxAttempts, secs(ftHold), rolledWhileThrottled, len(names), rolled.Round(time.Millisecond), rate, fig.Started, fig.Failed, fig.P99.Round(100*time.Microsecond), after.Round(time.Millisecond))
	return f.restore(ctx)
}

// countImages is how many of the StatefulSets in ns carry want.
func (s *Suite) countImages(ctx context.Context, ns string, names []string, want map[string]string) int {
	n := 0
	for _, name := range names {
		if sts, err := s.CP.GetSTS(ctx, ns, name); err == nil && k8s.SameImages(k8s.TemplateImages(sts.Spec.Template.Spec), want) {
			n++
		}
	}
	return n
}

// perName prints a count per name, sorted.
func perName(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
