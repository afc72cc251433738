package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
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
	return s.fx.ServerConfig("mlserver", name, ns, "team")
}

// getSC reads a ServerConfig; nil when it does not exist.
func (s *Suite) getSC(ctx context.Context, ns, name string) (*unstructured.Unstructured, error) {
	u, err := s.cp.Dyn.Resource(gvrServerConfig).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return u, err
}

func (s *Suite) deleteSC(ctx context.Context, ns, name string) error {
	err := s.cp.Dyn.Resource(gvrServerConfig).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (s *Suite) deleteServer(ctx context.Context, ns, name string) error {
	err := s.cp.Dyn.Resource(gvrServer).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitSC waits until the ServerConfig exists (want true) or is gone.
func (s *Suite) waitSC(ctx context.Context, ns, name string, want bool, timeout time.Duration) (*unstructured.Unstructured, time.Duration, error) {
	t0 := time.Now()
	var got *unstructured.Unstructured
	err := poll(timeout, func() error {
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
	err := poll(timeout, func() error {
		sts, err := s.cp.GetSTS(ctx, ns, name)
		if err != nil {
			return err
		}
		imgs := templateImages(sts.Spec.Template.Spec)
		last = fmtImages(imgs)
		if !sameImages(imgs, want) {
			return fmt.Errorf("images %s", last)
		}
		return nil
	})
	return time.Since(t0), last, err
}

// waitServerEvent waits for an Event with that reason on the Server.
func (s *Suite) waitServerEvent(ctx context.Context, ns, server, reason string, timeout time.Duration) (string, error) {
	var msg string
	err := poll(timeout, func() error {
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

// placeholderFacts checks what makes a placeholder: the label, no images,
// the two annotations, the used-by namespaces, and who wrote it.
func placeholderFacts(u *unstructured.Unstructured, usedBy ...string) (bool, string) {
	var bad []string
	if u.GetLabels()[syncManagedByLabel] != syncManagedByValue {
		bad = append(bad, "label "+syncManagedByLabel+"="+u.GetLabels()[syncManagedByLabel])
	}
	cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "podSpec", "containers")
	var names []string
	for _, c := range cs {
		cm, _ := c.(map[string]any)
		names = append(names, fmt.Sprint(cm["name"]))
		if img, ok := cm["image"]; ok {
			bad = append(bad, fmt.Sprintf("container %v has image %v", cm["name"], img))
		}
	}
	if len(cs) == 0 {
		bad = append(bad, "no containers")
	}
	ann := u.GetAnnotations()
	if ann[syncPlaceholderAnn] == "" {
		bad = append(bad, "no "+syncPlaceholderAnn+" annotation")
	}
	for _, ns := range usedBy {
		if !strings.Contains(ann[syncUsedByAnn], ns) {
			bad = append(bad, fmt.Sprintf("%s=%q lacks %s", syncUsedByAnn, ann[syncUsedByAnn], ns))
		}
	}
	managers := map[string]bool{}
	for _, m := range u.GetManagedFields() {
		managers[m.Manager] = true
	}
	if !managers[syncFieldManager] {
		bad = append(bad, fmt.Sprintf("not written by field manager %s: %v", syncFieldManager, managers))
	}
	detail := fmt.Sprintf("containers %v (no images), %s=%q, managers %v", names, syncUsedByAnn, ann[syncUsedByAnn], keys(managers))
	if len(bad) > 0 {
		return false, strings.Join(bad, "; ") + "; " + detail
	}
	return true, detail
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
	l, err := s.cp.Kube.CoordinationV1().Leases(s.wh.PodNamespace).Get(ctx, syncLeaseName, metav1.GetOptions{})
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

// Kill ends the process group with SIGKILL: no shutdown path runs (the
// Lease is not released).
func (p *Proc) Kill() {
	if p == nil {
		return
	}
	if done, _ := p.Exited(); !done {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	procs.remove(p)
}

// runDoctor runs `serverconfig-webhook doctor` with the admin kubeconfig.
func (s *Suite) runDoctor(ctx context.Context, args ...string) (int, string) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, s.wh.Bin, append([]string{"doctor"}, args...)...)
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+s.cp.AdminKubeconfig)
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
