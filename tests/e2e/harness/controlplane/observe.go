package controlplane

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// Helpers that read what the API server stored and what
// kube-controller-manager did with it.

func (cp *ControlPlane) GetSTS(ctx context.Context, ns, name string) (*appsv1.StatefulSet, error) {
	return cp.Kube.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
}

// WaitPods waits until kube-controller-manager has created n Pods of the
// Server's StatefulSet (they stay Pending: there is no kubelet).
func (cp *ControlPlane) WaitPods(ctx context.Context, ns, server string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := util.Poll(timeout, func() error {
		l, err := cp.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "seldon-server-name=" + server})
		if err != nil {
			return err
		}
		pods = l.Items
		if len(pods) < n {
			return fmt.Errorf("%d of %d pods of %s/%s", len(pods), n, ns, server)
		}
		return nil
	})
	return pods, err
}

// PodsWithImages waits for n Pods of the Server and says whether every
// Pod it found runs exactly `images` (false on a timeout).
func (cp *ControlPlane) PodsWithImages(ctx context.Context, ns, server string, n int, images map[string]string, timeout time.Duration) (int, bool, error) {
	pods, err := cp.WaitPods(ctx, ns, server, n, timeout)
	ok := err == nil
	for _, p := range pods {
		ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), images)
	}
	return len(pods), ok, err
}

// FailedCreateEvents lists FailedCreate events of a StatefulSet (by uid).
func (cp *ControlPlane) FailedCreateEvents(ctx context.Context, ns string, uid types.UID) ([]string, error) {
	l, err := cp.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=StatefulSet,reason=FailedCreate",
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range l.Items {
		if e.InvolvedObject.UID == uid {
			out = append(out, e.Message)
		}
	}
	return out, nil
}

// WaitFailedCreate waits for a FailedCreate event whose message contains
// every one of the given substrings.
func (cp *ControlPlane) WaitFailedCreate(ctx context.Context, ns string, uid types.UID, timeout time.Duration, subs ...string) (string, error) {
	var found string
	err := util.Poll(timeout, func() error {
		msgs, err := cp.FailedCreateEvents(ctx, ns, uid)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if containsAll(m, subs...) {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no FailedCreate event with %q (saw %d FailedCreate events)", subs, len(msgs))
	})
	return found, err
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// DeleteSTS deletes a StatefulSet and waits until it and its Pods are gone
// (unscheduled Pods are removed at once by the API server).
func (cp *ControlPlane) DeleteSTS(ctx context.Context, ns, name string) error {
	err := cp.Kube.AppsV1().StatefulSets(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return util.Poll(60*time.Second, func() error {
		_, err := cp.GetSTS(ctx, ns, name)
		if err == nil {
			return fmt.Errorf("statefulset %s/%s still there", ns, name)
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		l, err := cp.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "seldon-server-name=" + name})
		if err != nil {
			return err
		}
		if len(l.Items) > 0 {
			for _, p := range l.Items {
				_ = cp.Kube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
			}
			return fmt.Errorf("%d pods left", len(l.Items))
		}
		return nil
	})
}

// DryRunDefaulted submits obj as a dry-run create under another name, with
// the owner references stripped (so the webhook's matchConditions skip it),
// and returns what the API server would store: the same defaulting as the
// stored object, without the webhook.
func (cp *ControlPlane) DryRunDefaulted(ctx context.Context, obj *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	o := obj.DeepCopy()
	o.Name = o.Name + "-dryrun"
	o.ResourceVersion = ""
	o.UID = ""
	o.OwnerReferences = nil
	o.ManagedFields = nil
	o.CreationTimestamp = metav1.Time{}
	o.Generation = 0
	o.Status = appsv1.StatefulSetStatus{}
	return cp.Kube.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}
