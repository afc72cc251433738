package standin

import (
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The Server status the stock controller writes (servers/status), as
// Seldon's code does it (operator v2.9.1 / v2.10.2):
//
//   - on any reconcile error (ServerConfig not found, a refused workload
//     write, an invalid scaling spec) updateStatusFromError sets the
//     condition False with the error text and writes the status, every
//     time, with no Event;
//   - on success the workload's condition (True when status.readyReplicas
//     >= spec.replicas, else False, with Seldon's reason texts), plus
//     status.selector and status.replicas, written only when the status
//     changed (equality.Semantic, which ignores lastTransitionTime).
//
// Conditions follow knative.dev/pkg/apis (the version Seldon pins,
// v0.0.0-20250128013458-efddeac3ec35): a LivingConditionSet with one
// dependent (the workload condition) and Ready; CreateAndSetCondition puts
// the text in `reason` (Seldon passes it as the reason) and leaves
// `message` empty; marking the dependent False marks Ready False alike;
// marking it True makes Ready True; a condition whose only change would be
// lastTransitionTime is left as it was; conditions are sorted by type.

// serverStatus is Seldon's ServerStatus (duckv1.Status inline).
type serverStatus struct {
	ObservedGeneration int64             `json:"observedGeneration,omitempty"`
	Conditions         []ServerCondition `json:"conditions,omitempty"`
	Annotations        map[string]string `json:"annotations,omitempty"`
	LoadedModels       int32             `json:"loadedModels"`
	Replicas           int32             `json:"replicas"`
	Selector           string            `json:"selector"`
}

// ServerCondition is knative's apis.Condition.
type ServerCondition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Severity           string `json:"severity,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
}

// Seldon's reason texts for a workload that exists
// (statefulset_reconciler.go, deployment_reconciler.go GetConditions).
var WorkloadReadyReasons = map[string][2]string{ // kind -> {ready, not ready}
	"StatefulSet": {"StatefulSet replicas matches desired replicas", "StatefulSet replicas does not match desired replicas"},
	"Deployment":  {"Deployment replicas matches desired replicas", "Deployment replicas does not match desired replicas"},
}

// StatusOf decodes the Server's status.
func StatusOf(u *unstructured.Unstructured) serverStatus {
	var st serverStatus
	if raw, ok := u.Object["status"]; ok {
		b, _ := json.Marshal(raw)
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// setCondition is knative's conditionsImpl.SetCondition.
func (st *serverStatus) setCondition(c ServerCondition) {
	var out []ServerCondition
	for _, old := range st.Conditions {
		if old.Type != c.Type {
			out = append(out, old)
			continue
		}
		c.LastTransitionTime = old.LastTransitionTime
		if old == c {
			return
		}
	}
	c.LastTransitionTime = time.Now().UTC().Format(time.RFC3339)
	out = append(out, c)
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	st.Conditions = out
}

// markWorkload is CreateAndSetCondition(type, ok, reason) + SetCondition:
// MarkTrueWithReason (then Ready True) or MarkFalse (Ready False alike).
func (st *serverStatus) markWorkload(condType string, ok bool, reason string) {
	if ok {
		st.setCondition(ServerCondition{Type: condType, Status: "True", Reason: reason})
		st.setCondition(ServerCondition{Type: "Ready", Status: "True"})
		return
	}
	st.setCondition(ServerCondition{Type: condType, Status: "False", Reason: reason})
	st.setCondition(ServerCondition{Type: "Ready", Status: "False", Reason: reason})
}

// withoutTimes: the status as equality.Semantic sees it (knative's
// VolatileTime never makes a difference).
func (st serverStatus) withoutTimes() serverStatus {
	c := st
	c.Conditions = nil
	for _, x := range st.Conditions {
		x.LastTransitionTime = ""
		c.Conditions = append(c.Conditions, x)
	}
	return c
}

// writeStatus sends the Server (as read at the start of the reconcile) with
// the new status through servers/status. A Server gone meanwhile is fine.
func (si *StandIn) writeStatus(ctx context.Context, server *unstructured.Unstructured, st serverStatus) error {
	_, dyn, err := si.clients()
	if err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	u := server.DeepCopy()
	u.Object["status"] = m
	_, err = dyn.Resource(k8s.GVRServer).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// statusFromError is updateStatusFromError: the condition False with the
// error's text, written unconditionally; a failure to write is only logged.
func (si *StandIn) statusFromError(ctx context.Context, server *unstructured.Unstructured, rerr error) {
	if server == nil || ctx.Err() != nil {
		return
	}
	st := StatusOf(server)
	st.markWorkload(si.Mode.ConditionType(), false, rerr.Error())
	if err := si.writeStatus(ctx, server, st); err != nil && ctx.Err() == nil {
		util.Step("stand-in controller: Server %s/%s: status on error: %v", server.GetNamespace(), server.GetName(), err)
	}
}

// statusFromWorkload is the success path: the workload condition from the
// object the controller holds after its write (the stored one), selector
// and replicas; written only when it differs from the Server's current
// status (read again, as updateStatus does).
func (si *StandIn) statusFromWorkload(ctx context.Context, server *unstructured.Unstructured, name string, replicas, ready int32) error {
	st := StatusOf(server)
	texts := WorkloadReadyReasons[si.Mode.WorkloadKind()]
	ok := ready >= replicas
	reason := texts[1]
	if ok {
		reason = texts[0]
	}
	st.markWorkload(si.Mode.ConditionType(), ok, reason)
	st.Selector = "seldon-server-name=" + name
	st.Replicas = replicas
	_, dyn, err := si.clients()
	if err != nil {
		return err
	}
	cur, err := dyn.Resource(k8s.GVRServer).Namespace(server.GetNamespace()).Get(ctx, server.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if reflect.DeepEqual(StatusOf(cur).withoutTimes(), st.withoutTimes()) {
		return nil
	}
	return si.writeStatus(ctx, server, st)
}
