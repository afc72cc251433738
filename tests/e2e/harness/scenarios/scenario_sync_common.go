package scenarios

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// Helpers of the sync-loop scenarios (scenario_sync_*.go). The sync loop runs
// inside the webhook process (`serve --sync`, the shipped flags).

const (
	syncManagedByLabel = "app.kubernetes.io/managed-by"
	syncManagedByValue = "serverconfig-webhook"
	syncPlaceholderAnn = "serverconfig-webhook/placeholder"
	syncUsedByAnn      = "serverconfig-webhook/used-by"
	syncSourceAnn      = "serverconfig-webhook/source"
	syncLeaseName      = "serverconfig-webhook-sync"
	syncFieldManager   = "serverconfig-webhook"
)

// teamConfig is the released mlserver ServerConfig named name in ns with the
// team's images (TeamImage).
func (s *Suite) teamConfig(ns, name string) *unstructured.Unstructured {
	return s.Fx.ServerConfig("mlserver", name, ns, "team")
}

// getSC reads a ServerConfig; nil when it does not exist.
func (s *Suite) getSC(ctx context.Context, ns, name string) (*unstructured.Unstructured, error) {
	u, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return u, err
}

func (s *Suite) deleteSC(ctx context.Context, ns, name string) error {
	err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (s *Suite) deleteServer(ctx context.Context, ns, name string) error {
	err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitSC waits until the ServerConfig exists (want true) or is gone.
func (s *Suite) waitSC(ctx context.Context, ns, name string, want bool, timeout time.Duration) (*unstructured.Unstructured, time.Duration, error) {
	t0 := time.Now()
	var got *unstructured.Unstructured
	err := util.Poll(timeout, func() error {
		u, err := s.getSC(ctx, ns, name)
		if err != nil {
			return err
		}
		got = u
		if (u != nil) != want {
			return fmt.Errorf("ServerConfig %s/%s exists=%v, want %v", ns, name, u != nil, want)
		}
		return nil
	})
	return got, time.Since(t0), err
}

// waitImages waits until the StatefulSet exists and its template carries want.
func (s *Suite) waitImages(ctx context.Context, ns, name string, want map[string]string, timeout time.Duration) (time.Duration, string, error) {
	t0 := time.Now()
	last := "<no StatefulSet>"
	err := util.Poll(timeout, func() error {
		sts, err := s.CP.GetSTS(ctx, ns, name)
		if err != nil {
			return err
		}
		imgs := k8s.TemplateImages(sts.Spec.Template.Spec)
		last = k8s.FmtImages(imgs)
		if !k8s.SameImages(imgs, want) {
			return fmt.Errorf("images %s", last)
		}
		return nil
	})
	return time.Since(t0), last, err
}

// waitServerEvent waits for an Event with that reason on the Server.
func (s *Suite) waitServerEvent(ctx context.Context, ns, server, reason string, timeout time.Duration) (string, error) {
	var msg string
	err := util.Poll(timeout, func() error {
		evs, err := s.ServerEvents(ctx, ns, server, reason)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return fmt.Errorf("no %s Event on Server %s/%s", reason, ns, server)
		}
		msg = evs[len(evs)-1].Message
		return nil
	})
	return msg, err
}

// placeholderFacts checks what makes a placeholder (src/core/placeholder.rs):
// the one fixed object per name whoever uses it -- the label, the
// explanation and nothing else in its metadata, no containers, no claim
// templates -- written by the sync loop's field manager.
func placeholderFacts(u *unstructured.Unstructured) (bool, string) {
	var bad []string
	labels, ann := u.GetLabels(), u.GetAnnotations()
	if labels[syncManagedByLabel] != syncManagedByValue || len(labels) != 1 {
		bad = append(bad, fmt.Sprintf("labels %v", labels))
	}
	if ann[syncPlaceholderAnn] == "" || len(ann) != 1 {
		bad = append(bad, fmt.Sprintf("annotations %v (want only %s)", keysOf(ann), syncPlaceholderAnn))
	}
	cs, found, _ := unstructured.NestedSlice(u.Object, "spec", "podSpec", "containers")
	if !found || len(cs) != 0 {
		bad = append(bad, fmt.Sprintf("containers %v (want none)", cs))
	}
	vcts, _, _ := unstructured.NestedSlice(u.Object, "spec", "volumeClaimTemplates")
	if len(vcts) != 0 {
		bad = append(bad, fmt.Sprintf("claim templates %v", vcts))
	}
	managers := map[string]bool{}
	for _, m := range u.GetManagedFields() {
		managers[m.Manager] = true
	}
	if !managers[syncFieldManager] {
		bad = append(bad, fmt.Sprintf("not written by field manager %s: %v", syncFieldManager, managers))
	}
	detail := fmt.Sprintf("no containers, annotations %v, managers %v", keysOf(ann), keys(managers))
	if len(bad) > 0 {
		return false, strings.Join(bad, "; ") + "; " + detail
	}
	return true, detail
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// leaseHolder reads the sync Lease's holder.
func (s *Suite) leaseHolder(ctx context.Context) (string, *coordv1.Lease, error) {
	l, err := s.CP.Kube.CoordinationV1().Leases(s.WH.PodNamespace).Get(ctx, syncLeaseName, metav1.GetOptions{})
	if err != nil {
		return "", nil, err
	}
	return ptr.Deref(l.Spec.HolderIdentity, ""), l, nil
}

// metricValue returns the value of an unlabelled metric (or of the sample
// whose labels contain label) in a /metrics text; NaN-free -1 when absent.
func metricValue(text, name, label string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if label == "" && !strings.HasPrefix(rest, " ") {
			continue
		}
		if label != "" && !strings.Contains(rest, label) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v
		}
	}
	return -1
}

// runDoctor runs `serverconfig-webhook doctor` with the admin kubeconfig.
func (s *Suite) runDoctor(ctx context.Context, args ...string) (int, string) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, s.WH.Bin, append([]string{"doctor"}, args...)...)
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+s.CP.AdminKubeconfig)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			return -1, err.Error()
		}
	}
	return code, string(out)
}

// secs formats a duration as seconds with one decimal.
func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// ensureSchedulerService creates the seldon-scheduler Service that Seldon's
// runtime puts in each namespace of the Scoped Operator Pattern (the stock
// controller dials seldon-scheduler.<namespace>:9004; nothing listens here).
func (s *Suite) ensureSchedulerService(ctx context.Context, ns string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "seldon-scheduler", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "scheduler", Port: 9004}},
			Selector: map[string]string{"app.kubernetes.io/name": "seldon-scheduler"}},
	}
	_, err := s.CP.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// outage is the webhook unregistered and stopped for a scenario.
type outage struct {
	s    *Suite
	back bool
}

// webhookOutage removes the registration and stops the webhook (a
// scenario that heals what was admitted without it).
func (s *Suite) webhookOutage(ctx context.Context) (*outage, error) {
	if err := s.CP.Unregister(ctx, s.MWC.GetName()); err != nil {
		return nil, err
	}
	s.WH.Stop()
	return &outage{s: s}, nil
}

// over: the scenario brought the webhook back itself.
func (o *outage) over() { o.back = true }

// restore (deferred) brings the shipped registration and the webhook back
// unless the scenario did.
func (o *outage) restore() {
	if !o.back {
		_ = o.s.needWebhook(context.Background())
	}
}
