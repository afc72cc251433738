package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// NewStandIn is a stand-in for the given controller, reading ServerConfigs
// from seldon-system.
func (s *Suite) NewStandIn(mode standin.ControllerMode) *standin.StandIn {
	return &standin.StandIn{CP: s.CP, ControllerNamespace: k8s.ControllerNS, Mode: mode}
}

// StartStandInController starts a stand-in for the stock 2.9.1 controller
// (StatefulSets) for the Servers of the given namespaces; Stop ends it
// ("controller down"), and starting a new one is a controller restart (its
// initial list reconciles every Server).
func (s *Suite) StartStandInController(ctx context.Context, namespaces ...string) (*standin.StandInController, error) {
	return s.StartStandInControllerFor(ctx, s.NewStandIn(standin.Mode291), namespaces...)
}

// StartStandInControllerFor runs the given stand-in (its mode, its
// deployment strategies, its warnings) as a controller.
func (s *Suite) StartStandInControllerFor(ctx context.Context, si *standin.StandIn, namespaces ...string) (*standin.StandInController, error) {
	return standin.StartController(ctx, si, namespaces...)
}

// legacyNotReadyReason is the reason of the Warning Event an earlier
// stand-in emitted where the stock controller sets its workload condition
// False. The stand-in now writes the condition, as the stock controller
// does, and emits no Event; ServerEvents still answers for this reason
// with the condition in Event form, for callers not yet moved to
// Suite.ServerCondition.
const legacyNotReadyReason = "StandInStatefulSetNotReady"

// ServerEvents lists the Events on a Server with the given reason.
func (s *Suite) ServerEvents(ctx context.Context, ns, server, reason string) ([]corev1.Event, error) {
	if reason == legacyNotReadyReason {
		return s.conditionAsEvents(ctx, ns, server)
	}
	l, err := s.CP.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + server + ",reason=" + reason})
	if err != nil {
		return nil, err
	}
	var out []corev1.Event
	for _, e := range l.Items {
		if e.InvolvedObject.Kind == "Server" {
			out = append(out, e)
		}
	}
	// events.k8s.io/v1 Events (kube-runtime's recorder) show up in core/v1
	// too, with reason and regarding -> involvedObject
	return out, nil
}

// conditionAsEvents: the Server's workload condition (either version's
// type), when False for an error rather than for replicas not ready yet,
// as one Event whose message is the condition's text.
func (s *Suite) conditionAsEvents(ctx context.Context, ns, server string) ([]corev1.Event, error) {
	for _, t := range []string{standin.Mode291.ConditionType(), standin.Mode2102.ConditionType()} {
		c, found, err := s.ServerCondition(ctx, ns, server, t)
		if err != nil {
			return nil, err
		}
		if !found || c.Status != "False" || isReplicaReason(c.Reason) {
			continue
		}
		return []corev1.Event{{
			InvolvedObject: corev1.ObjectReference{Kind: "Server", Namespace: ns, Name: server},
			Reason:         legacyNotReadyReason, Type: corev1.EventTypeWarning,
			Message: fmt.Sprintf("(condition %s=False) %s", t, strings.TrimSpace(c.Reason+" "+c.Message)),
		}}, nil
	}
	return nil, nil
}

func isReplicaReason(reason string) bool {
	for _, r := range standin.WorkloadReadyReasons {
		if reason == r[0] || reason == r[1] {
			return true
		}
	}
	return false
}

// ServerCondition reads a condition of the Server's status (what `kubectl
// get server -o yaml` shows); found is false when the Server or the
// condition does not exist.
func (s *Suite) ServerCondition(ctx context.Context, ns, name, condType string) (c standin.ServerCondition, found bool, err error) {
	u, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	for _, x := range standin.StatusOf(u).Conditions {
		if x.Type == condType {
			return x, true, nil
		}
	}
	return c, false, nil
}

// waitServerCondition waits until the Server's condition has the status and
// its reason or message satisfies ok (nil: any).
func (s *Suite) waitServerCondition(ctx context.Context, ns, name, condType, status string, ok func(standin.ServerCondition) bool, timeout time.Duration) (standin.ServerCondition, error) {
	var last standin.ServerCondition
	err := util.Poll(timeout, func() error {
		c, found, err := s.ServerCondition(ctx, ns, name, condType)
		if err != nil {
			return err
		}
		last = c
		if !found {
			return fmt.Errorf("Server %s/%s has no condition %s", ns, name, condType)
		}
		if c.Status != status || (ok != nil && !ok(c)) {
			return fmt.Errorf("Server %s/%s: %s=%s reason %q message %q", ns, name, c.Type, c.Status, c.Reason, c.Message)
		}
		return nil
	})
	return last, err
}

// controllerEvents are the Events on the Server that the webhook did not
// write (its recorder reports as serverconfig-webhook): the stock
// controller emits none for a failed reconcile, and neither may the
// stand-in (an earlier one did, StandInStatefulSetNotReady).
func (s *Suite) controllerEvents(ctx context.Context, ns, server string) ([]string, error) {
	l, err := s.CP.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + server})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range l.Items {
		if e.InvolvedObject.Kind != "Server" || e.ReportingController == syncFieldManager || e.Source.Component == syncFieldManager {
			continue
		}
		out = append(out, e.Reason+": "+e.Message)
	}
	return out, nil
}
