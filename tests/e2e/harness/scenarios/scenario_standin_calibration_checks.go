package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
)

// The standin-calibration checks beyond the body comparisons: what the
// trace shows of the real controller without a request body to compare
// (the request is pre-mutation, the field manager), and what Seldon's code
// does where the trace has no record (Services, Server status).

// bodyPodSpec is the pod template's spec of a workload body (audit JSON;
// empty when it has none).
func bodyPodSpec(raw []byte) corev1.PodSpec {
	var o struct {
		Spec struct {
			Template struct {
				Spec corev1.PodSpec `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Spec.Template.Spec
}

// bodyImages: container name -> image of a workload body (audit JSON).
func bodyImages(raw []byte) map[string]string {
	return k8s.TemplateImages(bodyPodSpec(raw))
}

func allEmpty(m map[string]string) bool {
	for _, v := range m {
		if v != "" {
			return false
		}
	}
	return len(m) > 0
}

// calibrationPreMutation: the audit requestObject is the body before the
// webhook's patch, in the trace (record 2) and here.
func (s *Suite) calibrationPreMutation(t0 time.Time, rec *standin.TraceRecord, si *standin.StandIn, ns string) {
	raw, _ := json.Marshal(rec.Request)
	traceReq := bodyImages(raw)
	evs, err := s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
		return e.UserAgent == si.Mode.UserAgent() && e.Verb == "create" && e.ObjectRef.Resource == "statefulsets" &&
			e.ObjectRef.Namespace == ns && e.ObjectRef.Name == rec.Name && e.ResponseStatus.Code == 201
	})
	var req, resp map[string]string
	mutated := false
	if len(evs) > 0 {
		req, resp = bodyImages(evs[0].RequestObject), bodyImages(evs[0].ResponseObject)
		for k, v := range evs[0].Annotations {
			mutated = mutated || (strings.HasPrefix(k, "mutation.webhook.admission.k8s.io/") && strings.Contains(v, `"mutated":true`))
		}
	}
	team := map[string]string{}
	for k, v := range rec.ResponseImages {
		team[k] = v // the team's ServerConfig (record 0) is replayed as is
	}
	ok := err == nil && allEmpty(traceReq) && rec.WebhookMutated && !allEmpty(rec.ResponseImages) &&
		len(evs) == 1 && allEmpty(req) && mutated && k8s.SameImages(resp, team)
	s.r.Check("standin-calibration/request-is-pre-mutation", ok,
		"trace record %d: request images %s, stored %s (webhook mutated: %v); here: %d create(s), request images %s, stored %s (mutated: %v) %v",
		rec.Record, k8s.FmtImages(traceReq), k8s.FmtImages(rec.ResponseImages), rec.WebhookMutated, len(evs), k8s.FmtImages(req), k8s.FmtImages(resp), mutated, err)
}

// calibrationFieldManagers: no field manager is set, so the API server
// derives it from the user agent, as for the real controller.
func (s *Suite) calibrationFieldManagers(ctx context.Context, nsSTS, nsDep string) {
	managers := func(mf []metav1.ManagedFieldsEntry) []string {
		var out []string
		for _, m := range mf {
			out = append(out, m.Manager+"/"+string(m.Operation))
		}
		sort.Strings(out)
		return out
	}
	has := func(l []string, want string) bool {
		for _, x := range l {
			if x == want {
				return true
			}
		}
		return false
	}
	sts, err1 := s.CP.GetSTS(ctx, nsSTS, "mlserver")
	dep, err2 := s.CP.Kube.AppsV1().Deployments(nsDep).Get(ctx, "mlserver-dep", metav1.GetOptions{})
	var ms, md []string
	if err1 == nil {
		ms = managers(sts.ManagedFields)
	}
	if err2 == nil {
		md = managers(dep.ManagedFields)
	}
	s.r.Check("standin-calibration/field-manager", err1 == nil && err2 == nil &&
		has(ms, standin.Mode291.FieldManager()+"/Update") && !has(ms, "manager/Update") && has(md, standin.Mode2102Deployment.FieldManager()+"/Update"),
		"user agents %s and %s, no fieldManager: StatefulSet managers %v, Deployment managers %v %v %v",
		standin.Mode291.UserAgent(), standin.Mode2102Deployment.UserAgent(), ms, md, err1, err2)
}

// calibrationServices: the per-replica headless Services of StatefulSet
// mode (Seldon's service_reconciler.go; the trace recorded no Services),
// none in Deployment mode; a further reconcile changes none of them.
func (s *Suite) calibrationServices(ctx context.Context, si *standin.StandIn, nsSTS, nsDep string) {
	u, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(nsSTS).Get(ctx, "mlserver", metav1.GetOptions{})
	if err != nil {
		s.r.Check("standin-calibration/per-replica-services", false, "the Server: %v", err)
		return
	}
	list := func(ns, server string) (map[string]corev1.Service, error) {
		l, err := s.CP.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: standin.ServerReplicaLabel + "=" + server})
		if err != nil {
			return nil, err
		}
		out := map[string]corev1.Service{}
		for _, svc := range l.Items {
			out[svc.Name] = svc
		}
		return out, nil
	}
	svcs, err := list(nsSTS, "mlserver")
	var bad []string
	if err != nil {
		bad = append(bad, err.Error())
	}
	wantPorts := []corev1.ServicePort{
		{Name: "http", Port: 9000, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
		{Name: "grpc", Port: 9500, TargetPort: intstr.FromString("grpc"), Protocol: corev1.ProtocolTCP},
		{Name: "agent", Port: 9005, TargetPort: intstr.FromInt32(9005), Protocol: corev1.ProtocolTCP},
	}
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("mlserver-%d", i)
		svc, ok := svcs[name]
		if !ok {
			bad = append(bad, name+" missing")
			continue
		}
		ref := metav1.GetControllerOf(&svc)
		switch {
		case svc.Labels[standin.ServerReplicaLabel] != "mlserver" || svc.Labels[standin.ServerReplicaNameLabel] != name:
			bad = append(bad, fmt.Sprintf("%s labels %v", name, svc.Labels))
		case svc.Spec.ClusterIP != "None" || svc.Spec.Selector["statefulset.kubernetes.io/pod-name"] != name || len(svc.Spec.Selector) != 1:
			bad = append(bad, fmt.Sprintf("%s clusterIP %q selector %v", name, svc.Spec.ClusterIP, svc.Spec.Selector))
		case !reflect.DeepEqual(svc.Spec.Ports, wantPorts):
			bad = append(bad, fmt.Sprintf("%s ports %v", name, svc.Spec.Ports))
		case ref == nil || ref.Kind != "Server" || ref.UID != u.GetUID():
			bad = append(bad, fmt.Sprintf("%s controller %v", name, ref))
		}
	}
	if len(svcs) != 2 {
		bad = append(bad, fmt.Sprintf("%d Services for 2 replicas", len(svcs)))
	}
	out, rerr := si.ReconcileServer(ctx, nsSTS, "mlserver", false)
	again, _ := list(nsSTS, "mlserver")
	for n, svc := range svcs {
		if again[n].ResourceVersion != svc.ResourceVersion {
			bad = append(bad, fmt.Sprintf("%s rewritten by a reconcile (resourceVersion %s -> %s)", n, svc.ResourceVersion, again[n].ResourceVersion))
		}
	}
	if rerr != nil || out.Op != "no-change" {
		bad = append(bad, fmt.Sprintf("a further reconcile: %s %v", out.Op, rerr))
	}
	depSvcs, derr := list(nsDep, "mlserver-dep")
	if derr != nil || len(depSvcs) != 0 {
		bad = append(bad, fmt.Sprintf("Deployment mode: %d Services %v", len(depSvcs), derr))
	}
	s.r.Check("standin-calibration/per-replica-services", len(bad) == 0,
		"StatefulSet mode, 2 replicas: %s/mlserver-0 and -1 (headless, selector statefulset.kubernetes.io/pod-name, ports http 9000, grpc 9500, agent 9005, controlled by the Server), unchanged by a further reconcile; Deployment mode: none. Problems: %v", nsSTS, bad)
}

// calibrationStatus: after the reconciles, the Server's status as Seldon's
// Reconcile leaves it (no kubelet: no replica is ever ready).
func (s *Suite) calibrationStatus(ctx context.Context, ns string) {
	u, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ns).Get(ctx, "mlserver", metav1.GetOptions{})
	if err != nil {
		s.r.Check("standin-calibration/status-after-reconcile", false, "%v", err)
		return
	}
	st := standin.StatusOf(u)
	notReady := standin.WorkloadReadyReasons["StatefulSet"][1]
	var got []string
	for _, c := range st.Conditions {
		got = append(got, fmt.Sprintf("%s=%s(%s)", c.Type, c.Status, c.Reason))
	}
	want := []string{"Ready=False(" + notReady + ")", "StatefulSetReady=False(" + notReady + ")"}
	s.r.Check("standin-calibration/status-after-reconcile",
		reflect.DeepEqual(got, want) && st.Selector == "seldon-server-name=mlserver" && st.Replicas == 2,
		"conditions %v (want %v), selector %q, replicas %d", got, want, st.Selector, st.Replicas)
}

// calibrationNoServerConfig: a Server whose ServerConfig name the
// controller namespace lacks: nothing built, the condition False with the
// real error text in its reason (through servers/status), no Event.
func (s *Suite) calibrationNoServerConfig(ctx context.Context, t0 time.Time, mode standin.ControllerMode, ns, sys string) {
	const server, missing = "calib-no-config", "calib-missing"
	name := "standin-calibration/no-serverconfig-condition"
	if mode.Is2102() {
		name += "-2.10.2"
	}
	if err := s.Apply(ctx, k8s.NewServer(ns, server, missing, 1, nil)); err != nil {
		s.r.Check(name, false, "%v", err)
		return
	}
	si := s.NewStandIn(mode)
	si.ControllerNamespace = sys
	out, rerr := si.ReconcileServer(ctx, ns, server, false)
	want := fmt.Sprintf("serverconfigs.mlops.seldon.io %q not found", missing)
	if mode.Is2102() {
		want = "failed to get ServerConfig: " + want
	}
	c, found, err := s.ServerCondition(ctx, ns, server, mode.ConditionType())
	ready, _, _ := s.ServerCondition(ctx, ns, server, "Ready")
	var werr error
	if mode.Deployments {
		_, werr = s.CP.Kube.AppsV1().Deployments(ns).Get(ctx, server, metav1.GetOptions{})
	} else {
		_, werr = s.CP.GetSTS(ctx, ns, server)
	}
	evs, eerr := s.controllerEvents(ctx, ns, server)
	writes, _ := s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
		return e.UserAgent == mode.UserAgent() && e.ObjectRef.Resource == "servers" && e.ObjectRef.Subresource == "status" &&
			e.ObjectRef.Namespace == ns && e.ObjectRef.Name == server && e.Verb == "update" && e.ResponseStatus.Code == 200
	})
	ok := rerr != nil && out.NotFound && rerr.Error() == want && err == nil && found && c.Status == "False" && c.Reason == want && c.Message == "" &&
		ready.Status == "False" && ready.Reason == want && apierrors.IsNotFound(werr) && eerr == nil && len(evs) == 0 && len(writes) == 1
	s.r.Check(name, ok, "%s: reconcile error %q; %s=%s reason %q message %q, Ready=%s; %s: %v; %d servers/status update(s) by %s; Events not by the webhook: %q %v",
		mode, fmt.Sprint(rerr), c.Type, c.Status, c.Reason, c.Message, ready.Status, mode.WorkloadKind(), werr, len(writes), mode.UserAgent(), evs, eerr)
	_ = s.deleteServer(ctx, ns, server)
}
