package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioHostileTenants: what one tenant -- a user with edit rights on
// mlops.seldon.io and apps objects in its own namespace only -- or any
// client that reaches the webhook's port can make the webhook and the API
// server do to the other tenants (issue 15): a workload with a huge list
// (the API server's patch work), a huge ServerConfig named like another
// tenant's (the shared placeholder), a name the platform later takes over
// (the placeholder it must then never delete), ServerConfig churn past the
// placeholder cap (Events, and the other tenant's latency), and reviews
// naming random Servers (direct GETs). Figures are FIGURE lines.
func scenarioHostileTenants(ctx context.Context, s *Suite) error {
	const sc = "hostile-tenants"
	h := &hostile{s: s, sc: sc, nsA: "hostile-a", nsB: "hostile-b", user: "hostile-a-developer"}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := h.setup(ctx); err != nil {
		return err
	}
	for _, step := range []func(context.Context) error{
		h.longLists, h.hugeSharedConfig, h.squattedName, h.churnPastTheCap, h.randomNames,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return h.cleanup(ctx)
}

type hostile struct {
	s             *Suite
	sc            string
	nsA, nsB      string
	user          string
	tk            kubernetes.Interface // tenant A's client
	td            dynamic.Interface
	bSTS          *appsv1.StatefulSet // B's stored StatefulSet at the start
	bImages       map[string]string
	aFixed        *appsv1.StatefulSet // A's StatefulSet as the webhook fixes it
	spam          []string
	extraCleanups []func()
}

const (
	hostileShared = "shared-name" // used by both tenants
	hostileOwn    = "own-config"  // A's own
	hostileSquat  = "squat"       // A's, later taken over by the platform
)

func (h *hostile) setup(ctx context.Context) error {
	s := h.s
	for _, ns := range []string{h.nsA, h.nsB} {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	if err := s.Apply(ctx, s.teamConfig(h.nsA, hostileOwn), k8s.NewServer(h.nsA, "a-srv", hostileOwn, 1, nil),
		s.teamConfig(h.nsB, hostileShared), k8s.NewServer(h.nsB, "b-srv", hostileShared, 1, nil)); err != nil {
		return err
	}
	for _, name := range []string{hostileOwn, hostileShared} {
		if _, _, err := s.waitSC(ctx, k8s.ControllerNS, name, true, 30*time.Second); err != nil {
			return fmt.Errorf("placeholder %s: %w", name, err)
		}
	}
	h.bImages = s.teamImages(h.nsB, "mlserver", hostileShared)
	if err := util.Poll(30*time.Second, func() error {
		var err error
		_, h.bSTS, err = s.StandIn.Reconcile(ctx, h.nsB, "b-srv")
		return err
	}); err != nil {
		return fmt.Errorf("tenant B's StatefulSet: %w", err)
	}
	if err := s.tenantRole(ctx, h.nsA, h.user); err != nil {
		return err
	}
	var err error
	if h.tk, h.td, err = s.tenantUser(h.user); err != nil {
		return err
	}
	desired, err := s.StandIn.Build(ctx, h.nsA, "a-srv")
	if err != nil {
		return err
	}
	return util.Poll(20*time.Second, func() error {
		h.aFixed, err = h.tk.AppsV1().StatefulSets(h.nsA).Create(ctx, desired, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	})
}

// withArgs is A's fixed StatefulSet with containers[1].args set to n empty
// strings; owned false drops the owner reference (the webhook is then not
// called: the registration's matchConditions filter it out).
func (h *hostile) withArgs(n int, owned bool, name string) *appsv1.StatefulSet {
	o := h.aFixed.DeepCopy()
	o.Name, o.ResourceVersion, o.UID = name, "", ""
	o.Annotations = map[string]string{}
	args := make([]string, n)
	o.Spec.Template.Spec.Containers[1].Args = args
	if !owned {
		o.OwnerReferences = nil
	}
	return o
}

// apiServerCPU is kube-apiserver's CPU seconds for k dry-run creates of obj.
func (h *hostile) apiServerCPU(ctx context.Context, obj *appsv1.StatefulSet, k int) (float64, error) {
	before := util.ProcCPU(h.s.CP.APIServer)
	var last error
	for i := 0; i < k; i++ {
		_, last = h.tk.AppsV1().StatefulSets(h.nsA).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	time.Sleep(500 * time.Millisecond) // let the work the requests left finish
	return (util.ProcCPU(h.s.CP.APIServer) - before) / float64(k), last
}

// 1. A workload with a list far longer than a Seldon pod spec holds is
// refused before any patch is built; the longest accepted one gets a
// patch of a few operations (the list replaced whole), so the API server
// works about as much as without the webhook.
func (h *hostile) longLists(ctx context.Context) error {
	s := h.s
	const refused, accepted, k = 40000, 1000, 20
	withCPU, errRefused := h.apiServerCPU(ctx, h.withArgs(refused, true, "a-long"), k)
	withoutCPU, errPlain := h.apiServerCPU(ctx, h.withArgs(refused, false, "a-long"), k)
	s.r.Check(checkName(h.sc, "long-list-refused"),
		errRefused != nil && strings.Contains(errRefused.Error(), "has more than 1000 entries") && errPlain == nil,
		"%d args in containers[1]: %v (without the webhook: %v)", refused, errRefused, errPlain)
	util.Step("FIGURE %s: kube-apiserver CPU per dry-run create with %d args: %.3f s with the webhook, %.3f s without", h.sc, refused, withCPU, withoutCPU)

	got, errAccepted := h.tk.AppsV1().StatefulSets(h.nsA).Create(ctx, h.withArgs(accepted, true, "a-long"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	ok := errAccepted == nil && len(got.Spec.Template.Spec.Containers) > 1 &&
		len(got.Spec.Template.Spec.Containers[1].Args) == len(h.aFixed.Spec.Template.Spec.Containers[1].Args)
	detail := fmt.Sprint(errAccepted)
	if errAccepted == nil {
		detail = fmt.Sprintf("stored with %d args (the ServerConfig's)", len(got.Spec.Template.Spec.Containers[1].Args))
	}
	withCPU, _ = h.apiServerCPU(ctx, h.withArgs(accepted, true, "a-long"), k)
	withoutCPU, _ = h.apiServerCPU(ctx, h.withArgs(accepted, false, "a-long"), k)
	s.r.Check(checkName(h.sc, "longest-list-accepted"), ok, "%d args: %s", accepted, detail)
	util.Step("FIGURE %s: kube-apiserver CPU per dry-run create with %d args: %.3f s with the webhook, %.3f s without", h.sc, accepted, withCPU, withoutCPU)
	return nil
}

// 4. A's ServerConfig named like B's, with more containers than any pod
// spec holds: the placeholder of the name is unchanged (it never depends
// on a tenant's content), B's workload and the controller's Updates of it
// too, and A's own workloads of that name are refused with the reason.
func (h *hostile) hugeSharedConfig(ctx context.Context) error {
	s := h.s
	before, err := s.getSC(ctx, k8s.ControllerNS, hostileShared)
	if err != nil || before == nil {
		return fmt.Errorf("placeholder %s: %v", hostileShared, err)
	}
	huge := s.teamConfig(h.nsA, hostileShared)
	huge.SetResourceVersion("")
	var cs []any
	for i := 0; i < 1500; i++ {
		cs = append(cs, map[string]any{"name": fmt.Sprintf("c-%d", i), "image": "registry.hostile/x:1"})
	}
	if err := unstructured.SetNestedSlice(huge.Object, cs, "spec", "podSpec", "containers"); err != nil {
		return err
	}
	if _, err := h.td.Resource(k8s.GVRServerConfig).Namespace(h.nsA).Create(ctx, huge, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("A's huge ServerConfig: %w", err)
	}
	if _, err := h.td.Resource(k8s.GVRServer).Namespace(h.nsA).Create(ctx, k8s.NewServer(h.nsA, "a-shared", hostileShared, 1, nil), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	time.Sleep(3 * time.Second) // several placeholder passes
	after, err := s.getSC(ctx, k8s.ControllerNS, hostileShared)
	phOK, phDetail := false, fmt.Sprint(err)
	if err == nil && after != nil {
		phOK, phDetail = placeholderFacts(after)
		phOK = phOK && after.GetResourceVersion() == before.GetResourceVersion()
		phDetail = fmt.Sprintf("resourceVersion %s -> %s; %s", before.GetResourceVersion(), after.GetResourceVersion(), phDetail)
	}
	// the controller's full Update of B's workload, as after any reconcile
	_, bNow, uerr := s.StandIn.Reconcile(ctx, h.nsB, "b-srv")
	bOK := uerr == nil && k8s.SameImages(k8s.TemplateImages(bNow.Spec.Template.Spec), h.bImages) &&
		bNow.Generation == h.bSTS.Generation
	bDetail := fmt.Sprint(uerr)
	if uerr == nil {
		bDetail = fmt.Sprintf("%s, generation %d -> %d", k8s.FmtImages(k8s.TemplateImages(bNow.Spec.Template.Spec)), h.bSTS.Generation, bNow.Generation)
	}
	s.r.Check(checkName(h.sc, "huge-config-leaves-b-alone"), phOK && bOK, "placeholder %s: %s; B's StatefulSet after the controller's Update: %s", hostileShared, phDetail, bDetail)
	aDesired, err := s.StandIn.Build(ctx, h.nsA, "a-shared")
	if err != nil {
		return err
	}
	_, aerr := h.tk.AppsV1().StatefulSets(h.nsA).Create(ctx, aDesired, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	s.r.Check(checkName(h.sc, "huge-config-refused-for-a"), aerr != nil && strings.Contains(aerr.Error(), "has more than 1000 entries"),
		"A's StatefulSet from its 1,500-container ServerConfig: %v", aerr)
	return nil
}

// 5. A name a tenant used, whose placeholder the platform then turns into a
// real ServerConfig while keeping the label (as `kubectl apply` does): it
// is adopted, reported once, and never deleted when the tenant lets go.
func (h *hostile) squattedName(ctx context.Context) error {
	s := h.s
	if _, err := h.td.Resource(k8s.GVRServerConfig).Namespace(h.nsA).Create(ctx, s.teamConfig(h.nsA, hostileSquat), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, hostileSquat, true, 30*time.Second); err != nil {
		return fmt.Errorf("placeholder %s: %w", hostileSquat, err)
	}
	platformImage := "harbor.test/platform/seldon-agent:2.9.1"
	patch := fmt.Sprintf(`{"spec":{"podSpec":{"containers":[{"name":"agent","image":%q}]}}}`, platformImage)
	if _, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(k8s.ControllerNS).Patch(ctx, hostileSquat, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-client-side-apply"}); err != nil {
		return fmt.Errorf("the platform's change: %w", err)
	}
	h.extraCleanups = append(h.extraCleanups, func() {
		_ = s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(k8s.ControllerNS).Delete(context.Background(), hostileSquat, metav1.DeleteOptions{})
	})
	if err := h.td.Resource(k8s.GVRServerConfig).Namespace(h.nsA).Delete(ctx, hostileSquat, metav1.DeleteOptions{}); err != nil {
		return err
	}
	time.Sleep(4 * time.Second) // several placeholder passes
	still, err := s.getSC(ctx, k8s.ControllerNS, hostileSquat)
	kept := err == nil && still != nil && strings.Contains(fmt.Sprint(still.Object["spec"]), platformImage)
	var events []string
	_ = util.Poll(15*time.Second, func() error {
		l, err := s.CP.Kube.CoreV1().Events(k8s.ControllerNS).List(ctx, metav1.ListOptions{FieldSelector: "reason=PlaceholderAdopted,involvedObject.name=" + hostileSquat})
		if err != nil {
			return err
		}
		events = nil
		for _, e := range l.Items {
			events = append(events, e.Message)
		}
		if len(events) == 0 {
			return fmt.Errorf("no PlaceholderAdopted Event")
		}
		return nil
	})
	s.r.Check(checkName(h.sc, "adopted-placeholder-kept"), kept && len(events) == 1,
		"after tenant A deleted its %q: %s/%s exists with the platform's image: %v (%v); PlaceholderAdopted Events: %d %q",
		hostileSquat, k8s.ControllerNS, hostileSquat, kept, err, len(events), events)
	code, out := s.runDoctor(ctx)
	s.r.Check(checkName(h.sc, "doctor-names-adopted"), strings.Contains(out, "adopted") && strings.Contains(out, hostileSquat),
		"doctor (exit %d) says: %s", code, util.OneLine(lineWith(out, hostileSquat)))
	return nil
}

// eventWrites is how many times Events with that reason were written in ns
// (a series counts each occurrence).
func (h *hostile) eventWrites(ctx context.Context, ns, reason string) (int, error) {
	l, err := h.s.CP.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range l.Items {
		n += eventOccurrences(e)
	}
	return n, nil
}

func eventOccurrences(e corev1.Event) int {
	n := 1
	if int(e.Count) > n {
		n = int(e.Count)
	}
	if e.Series != nil && int(e.Series.Count) > n {
		n = int(e.Series.Count)
	}
	return n
}

// 6. A past the placeholder cap churns its ServerConfigs: no Event is
// written again for what was reported, and B's new ServerConfig gets its
// placeholder as fast as when nothing churns.
func (h *hostile) churnPastTheCap(ctx context.Context) error {
	s := h.s
	capN, _ := strconv.Atoi(s.shippedFlag("max-placeholders-per-namespace"))
	if capN <= 0 {
		capN = 20
	}
	bQuiet, err := h.bPlaceholderLatency(ctx, "b-quiet")
	if err != nil {
		return err
	}
	for i := 0; i < capN+10; i++ {
		name := fmt.Sprintf("spam-%02d", i)
		h.spam = append(h.spam, name)
		if _, err := h.td.Resource(k8s.GVRServerConfig).Namespace(h.nsA).Create(ctx, s.teamConfig(h.nsA, name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	// the cap is reached and reported; names capped after the first report
	// are reported at most once per 30 s per namespace, so wait that out
	if err := util.Poll(60*time.Second, func() error {
		n, err := h.eventWrites(ctx, h.nsA, "PlaceholderCapReached")
		if err != nil || n == 0 {
			return fmt.Errorf("no PlaceholderCapReached yet: %v", err)
		}
		return nil
	}); err != nil {
		return err
	}
	time.Sleep(36 * time.Second)
	e0, err := h.eventWrites(ctx, h.nsA, "PlaceholderCapReached")
	if err != nil {
		return err
	}
	// 20 label changes, one every 200 ms, while B creates a ServerConfig
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			name := h.spam[i%len(h.spam)]
			p := fmt.Sprintf(`{"metadata":{"labels":{"churn":"%d"}}}`, i)
			_, _ = h.td.Resource(k8s.GVRServerConfig).Namespace(h.nsA).Patch(ctx, name, types.MergePatchType, []byte(p), metav1.PatchOptions{})
			time.Sleep(200 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	bChurn, berr := h.bPlaceholderLatency(ctx, "b-during-churn")
	wg.Wait()
	time.Sleep(3 * time.Second)
	e1, err := h.eventWrites(ctx, h.nsA, "PlaceholderCapReached")
	s.r.Check(checkName(h.sc, "churn-writes-no-events"), err == nil && e1 == e0,
		"PlaceholderCapReached writes in %s: %d after the cap was reported, %d after 20 label changes %v", h.nsA, e0, e1, err)
	s.r.Check(checkName(h.sc, "churn-does-not-delay-b"), berr == nil && bChurn < 10*time.Second,
		"B's placeholder: %s while A churned (%s without churn) %v", secs(bChurn), secs(bQuiet), berr)
	util.Step("FIGURE %s: PlaceholderCapReached writes during 20 label changes past the cap: %d; B's placeholder latency %s (quiet: %s)", h.sc, e1-e0, secs(bChurn), secs(bQuiet))
	return nil
}

// bPlaceholderLatency creates a ServerConfig in B and times its placeholder.
func (h *hostile) bPlaceholderLatency(ctx context.Context, name string) (time.Duration, error) {
	if err := h.s.Apply(ctx, h.s.teamConfig(h.nsB, name)); err != nil {
		return 0, err
	}
	_, took, err := h.s.waitSC(ctx, k8s.ControllerNS, name, true, 30*time.Second)
	return took, err
}

// 8. Reviews sent straight to the webhook, each naming a random Server in
// B's namespace: every one is refused alike, and the direct GETs they
// cause are bounded by the rate limit, not by the number of reviews.
func (h *hostile) randomNames(ctx context.Context) error {
	s := h.s
	client, _ := WebhookClient([][]byte{s.WH.CA.CertPEM}, nil)
	gets := func() float64 {
		text := s.WH.Metrics()
		sum := 0.0
		for _, r := range []string{"found", "not_found", "error"} {
			if v := metricValue(text, "serverconfig_webhook_direct_gets_total", `kind="Server",result="`+r+`"`); v > 0 {
				sum += v
			}
		}
		return sum
	}
	g0 := gets()
	const notSent = "direct GET after cache miss not sent"
	logged0 := s.WH.LogLines(notSent)
	const n = 400
	started := time.Now()
	var refused, other int
	var sample string
	for i := 0; i < n; i++ {
		sts := h.bSTS.DeepCopy()
		name := fmt.Sprintf("guess-%d", rand.Int63())
		sts.Name, sts.OwnerReferences[0].Name = name, name
		sts.Spec.Template.Spec = corev1.PodSpec{}
		uid := fmt.Sprintf("hostile-%d", i)
		body, err := AdmissionReviewFor(sts, uid)
		if err != nil {
			return err
		}
		resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d/mutate", s.WH.Port), "application/json", bytes.NewReader(body))
		if err != nil {
			other++
			continue
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// refused: reviewAnswer reports "denied: <message>"
		if _, err := reviewAnswer(resp.StatusCode, rb, uid, nil); err != nil && strings.HasPrefix(err.Error(), "denied: ") &&
			strings.Contains(err.Error(), "does not exist") {
			refused++
			sample = strings.TrimPrefix(err.Error(), "denied: ")
		} else {
			other++
		}
	}
	elapsed := time.Since(started)
	sent := gets() - g0
	throttled := metricValue(s.WH.Metrics(), "serverconfig_webhook_direct_gets_total", `kind="Server",result="throttled"`)
	bound := 50 + 20*elapsed.Seconds() + 5
	// the warning for a GET not sent is rate limited too (one per 10 s)
	logged, logBound := s.WH.LogLines(notSent)-logged0, int(elapsed/(10*time.Second))+1
	s.r.Check(checkName(h.sc, "random-names-log-bounded"), logged0 >= 0 && logged <= logBound,
		"%.0f direct GETs not sent in %s: %d warning lines in the webhook log (bound %d)", throttled, secs(elapsed), logged, logBound)
	s.r.Check(checkName(h.sc, "random-names-bounded"), refused == n && g0 >= 0 && sent >= 0 && sent <= bound && throttled > 0,
		"%d reviews naming random Servers in %s in %s: %d refused alike (%q), %d other; direct GETs sent %.0f (bound %.0f), throttled %.0f",
		n, h.nsB, secs(elapsed), refused, sample, other, sent, bound, throttled)
	util.Step("FIGURE %s: %d reviews naming random Servers: %.0f direct GETs sent, %.0f not sent (rate limit)", h.sc, n, sent, throttled)
	return nil
}

func (h *hostile) cleanup(ctx context.Context) error {
	s := h.s
	for _, name := range append(h.spam, hostileShared, hostileOwn) {
		_ = s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(h.nsA).Delete(ctx, name, metav1.DeleteOptions{})
	}
	for _, name := range []string{hostileShared, "b-quiet", "b-during-churn"} {
		_ = s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(h.nsB).Delete(ctx, name, metav1.DeleteOptions{})
	}
	for _, f := range h.extraCleanups {
		f()
	}
	return nil
}

// lineWith is the first line of text containing sub.
func lineWith(text, sub string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
