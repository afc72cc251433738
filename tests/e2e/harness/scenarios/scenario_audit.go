package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
)

// The API server's limits on the warnings of one request
// (k8s.io/apiserver/pkg/endpoints/filters/warning.go): past 4096
// characters in all it cuts each to 256 and drops the rest.
const (
	apiWarningsMaxRunes = 4096
	apiWarningMaxRunes  = 256
)

// scenarioAuditAnnotations: every decision leaves its trail in the API
// server's audit log, as `<webhook name>/<key>` annotations on the entry of
// the write it decided: a create patched (outcome, source, hash equal to
// the stored object's), an Update found already applied (outcome,
// reason, source, hash), a create denied (outcome, the reason). And a
// ServerConfig that makes more warnings than the API server passes on:
// what the client gets is every warning whole, the last one saying how
// many more there were, never the API server's cut or silently dropped
// ones.
func scenarioAuditAnnotations(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	prefix, err := s.webhookName(ctx)
	if err != nil {
		return err
	}
	prefix += "/"
	ns := "audit-trail"
	if err := s.auditNamespace(ctx, ns, 0); err != nil {
		return err
	}
	t0 := time.Now()
	_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
	if !s.r.Check("audit-annotations/created", err == nil, "%v", err) {
		return nil
	}
	want := map[string]string{
		"outcome": "patched",
		"source":  ns + "/" + p1ServerConfig,
		"hash":    stored.Annotations["serverconfig-webhook/hash"],
	}
	s.checkAuditEntry(t0, "audit-annotations/create-patched", "create", ns, p1Server, prefix, want)

	t1 := time.Now()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.CP.GetSTS(ctx, ns, p1Server)
		if err != nil {
			return err
		}
		_, err = s.CP.Kube.AppsV1().StatefulSets(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if !s.r.Check("audit-annotations/updated", err == nil, "an Update of the stored object as it is: %v", err) {
		return nil
	}
	want["outcome"], want["reason"] = "unchanged", "already-applied"
	s.checkAuditEntry(t1, "audit-annotations/update-already-applied", "update", ns, p1Server, prefix, want)

	t2 := time.Now()
	ghost := ownedStatefulSet(ns, "ghost-workload", "ghost", types.UID("00000000-0000-0000-0000-00000000dead"))
	_, err = s.CP.Kube.AppsV1().StatefulSets(ns).Create(ctx, ghost, metav1.CreateOptions{})
	s.r.Check("audit-annotations/ghost-denied", err != nil && strings.Contains(err.Error(), "does not exist"), "create of a workload owned by no Server: %v", err)
	s.checkAuditEntry(t2, "audit-annotations/create-denied", "create", ns, ghost.Name, prefix, map[string]string{
		"outcome": "denied",
		"reason":  "serverconfig-webhook: Server " + ns + "/ghost (uid \"00000000-0000-0000-0000-00000000dead\") named by the controller owner reference does not exist",
	})
	s.checkWarningLimits(ctx, prefix)
	return nil
}

// checkWarningLimits: a team ServerConfig with many containers without an
// image, each a warning; together far past the API server's limit.
func (s *Suite) checkWarningLimits(ctx context.Context, prefix string) {
	const extra = 40
	ns := "audit-warnings"
	if err := s.auditNamespace(ctx, ns, extra); !s.r.Check("audit-annotations/warnings-setup", err == nil, "%v", err) {
		return
	}
	s.StandIn.Warnings.Reset()
	t0 := time.Now()
	_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
	if !s.r.Check("audit-annotations/warnings-created", err == nil, "%v", err) {
		return
	}
	got := s.StandIn.Warnings.Matching("serverconfig-webhook:")
	total, longest, whole := 0, 0, 0
	for _, w := range got {
		n := utf8.RuneCountInString(w)
		total += n
		longest = max(longest, n)
		if strings.HasPrefix(w, `serverconfig-webhook: container "`+noImageContainer) && strings.HasSuffix(w, "has no image in ServerConfig "+ns+"/"+p1ServerConfig) {
			whole++
		}
	}
	s.r.Check("audit-annotations/warnings-within-limits", total <= apiWarningsMaxRunes && longest <= apiWarningMaxRunes,
		"%d warnings, %d characters in all (API server limit %d), the longest %d (limit %d)", len(got), total, apiWarningsMaxRunes, longest, apiWarningMaxRunes)
	last := ""
	if len(got) > 0 {
		last = got[len(got)-1]
	}
	summary := fmt.Sprintf("serverconfig-webhook: %d more warnings not shown", extra-whole)
	s.r.Check("audit-annotations/warnings-whole-and-counted", whole > 0 && whole < extra && strings.HasPrefix(last, summary),
		"%d of the %d no-image warnings arrived whole; the last warning is %q, want it to start %q", whole, extra, last, summary)
	s.checkAuditEntry(t0, "audit-annotations/warnings-create-patched", "create", ns, p1Server, prefix, map[string]string{
		"outcome": "patched",
		"source":  ns + "/" + p1ServerConfig,
		"hash":    stored.Annotations["serverconfig-webhook/hash"],
	})
	// kube-controller-manager cannot make Pods without images: stop it trying
	if err := s.CP.DeleteSTS(ctx, ns, p1Server); err != nil {
		s.r.Check("audit-annotations/warnings-cleanup", false, "%v", err)
	}
}

// noImageContainer starts the names of the containers auditNamespace adds.
const noImageContainer = "no-image-"

// auditNamespace makes ns hold the Pattern 1 ServerConfig and Server (the
// controller-namespace ServerConfig the stand-in builds from too), with
// `extra` more containers of 63-character names and no image in the team's
// ServerConfig, and no workload yet.
func (s *Suite) auditNamespace(ctx context.Context, ns string, extra int) error {
	if err := s.applyPattern1(ctx, k8s.FormPlatform); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	sc := s.Fx.ServerConfig("mlserver", p1ServerConfig, ns, "team")
	cs, _, _ := unstructured.NestedSlice(sc.Object, "spec", "podSpec", "containers")
	for i := 0; i < extra; i++ {
		name := fmt.Sprintf("%s%02d-%s", noImageContainer, i, strings.Repeat("x", 63-len(noImageContainer)-3))
		cs = append(cs, map[string]any{"name": name})
	}
	if err := unstructured.SetNestedSlice(sc.Object, cs, "spec", "podSpec", "containers"); err != nil {
		return err
	}
	if err := s.Apply(ctx, sc, k8s.NewServer(ns, p1Server, p1ServerConfig, 1, nil)); err != nil {
		return err
	}
	return s.CP.DeleteSTS(ctx, ns, p1Server)
}

// checkAuditEntry: the one completed audit entry of that write since t0
// (not counting writes refused for a conflict)
// carries exactly these webhook annotations (the API server's own, such as
// the patch record, are not counted).
func (s *Suite) checkAuditEntry(t0 time.Time, check, verb, ns, name, prefix string, want map[string]string) {
	var evs []controlplane.AuditEvent
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		evs, err = s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
			return e.Verb == verb && e.ObjectRef.Resource == "statefulsets" && e.ObjectRef.Subresource == "" &&
				e.ObjectRef.Namespace == ns && e.ObjectRef.Name == name && !e.DryRun() &&
				e.ResponseStatus.Code != 409 // a conflict never reached admission
		})
		if err == nil && len(evs) > 0 {
			break
		}
	}
	if !s.r.Check(check+"/entry", err == nil && len(evs) == 1, "%d %s entries for %s/%s: %v", len(evs), verb, ns, name, err) {
		return
	}
	got := map[string]string{}
	for k, v := range evs[0].Annotations {
		if key, ok := strings.CutPrefix(k, prefix); ok {
			got[key] = v
		}
	}
	s.r.Check(check, fmt.Sprint(got) == fmt.Sprint(want), "annotations %s*: %v; want %v", prefix, got, want)
}

// webhookName is the name of the registered webhook, which the API server
// puts before each key of its audit annotations.
func (s *Suite) webhookName(ctx context.Context) (string, error) {
	hooks, _, err := unstructured.NestedSlice(s.MWC.Object, "webhooks")
	if err != nil || len(hooks) != 1 {
		return "", fmt.Errorf("the registration has %d webhooks (%v), want 1", len(hooks), err)
	}
	name, _ := hooks[0].(map[string]any)["name"].(string)
	if name == "" {
		return "", fmt.Errorf("the registration's webhook has no name")
	}
	return name, nil
}

// ownedStatefulSet is a minimal StatefulSet whose controller owner
// reference names Server `server` with that uid.
func ownedStatefulSet(ns, name, server string, uid types.UID) *appsv1.StatefulSet {
	yes := true
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "mlops.seldon.io/v1alpha1", Kind: "Server", Name: server, UID: uid, Controller: &yes,
			}},
		},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}
