package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioStandInCalibration replays the INPUTS of the real controller's
// trace (tests/e2e/fixtures/controller-trace: the ServerConfigs, the
// reconstructed Servers, the two scales) through the stand-in against this
// suite's kube-apiserver (1.33.13, as the trace's), reads the stand-in's
// request bodies from the suite's audit log and compares each with the
// real controller's request body of the trace, after removing what differs
// between any two runs (uids, resourceVersions, timestamps, managedFields,
// the namespaces -- the replay uses its own -- and the status an Update
// copies from the stored object), the seldon.io/last-applied annotation
// decoded and compared the same way, its encoding compared as is.
//
// The webhook is registered, as it was in the trace: the audit requestObject
// is the body the client sent (decoded, defaulted), before the mutating
// webhooks run (trace record 2: the request has no images, the stored
// object the team's; checked below on both sides), so the bodies are the
// controller's own either way.
//
// The stand-in is driven by hand, one reconcile at a time, with the stock
// controller's own decision (ReconcileServer, force false): a create where
// none is stored, an Update only where objectmatcher finds a difference.
func scenarioStandInCalibration(ctx context.Context, s *Suite) error {
	const sc = "standin-calibration"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	trace, err := standin.LoadTrace(s.Cfg.Repo)
	if err != nil {
		return err
	}
	servers, err := standin.LoadTraceServers(s.Cfg.Repo)
	if err != nil {
		return err
	}
	// the trace's namespaces -> the replay's (and back, for the comparison)
	nsOf := map[string]string{"financial-mlops-pytorch": "calib-team-a", "seldon-system": "calib-system", "team-d": "calib-team-d"}
	canon := map[string]string{}
	for t, n := range nsOf {
		canon[n] = t
		if err := s.CP.EnsureNamespace(ctx, n); err != nil {
			return err
		}
	}
	defer func() {
		for _, n := range nsOf {
			_ = s.CP.Kube.CoreV1().Namespaces().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	}()
	// the inputs: the ServerConfigs as the trace's requests created them,
	// then the Servers
	for _, rec := range []int{0, 1, 6, 145, 146} {
		if err := s.replayCreate(ctx, trace[rec].Request, nsOf, k8s.GVRServerConfig); err != nil {
			return fmt.Errorf("trace record %d: %w", rec, err)
		}
	}
	for _, srv := range servers {
		if err := s.replayCreate(ctx, srv.Object, nsOf, k8s.GVRServer); err != nil {
			return fmt.Errorf("Server %s/%s: %w", srv.GetNamespace(), srv.GetName(), err)
		}
	}
	nsA, nsSys, nsD := nsOf["financial-mlops-pytorch"], nsOf["seldon-system"], nsOf["team-d"]
	sts := s.NewStandIn(standin.Mode291)
	sts.ControllerNamespace = nsSys
	dep := s.NewStandIn(standin.Mode2102Deployment)
	dep.ControllerNamespace = nsSys
	t0 := time.Now()

	// the real controller's sequence, one reconcile each
	type replay struct {
		rec    int
		si     *standin.StandIn
		ns     string
		server string
		scale  bool // the Server was scaled to 2 first
		wantOp string
	}
	steps := []replay{
		{2, sts, nsA, "mlserver", false, "create"},
		{3, sts, nsA, "mlserver", true, "update"},
		{7, sts, nsSys, "mlserver", false, "create"},
		{61, dep, nsSys, "mlserver", false, "create"},
		{147, dep, nsD, "mlserver-dep", false, "create"},
		{150, dep, nsD, "mlserver-dep", true, "update"},
	}
	results := map[int]error{}
	for _, st := range steps {
		if st.scale {
			// as in the trace, kube-controller-manager has written the
			// workload's status by then (so the Update carries a real one)
			if err := s.waitObserved(ctx, st.si.Mode, st.ns, st.server); err != nil {
				return err
			}
			if err := s.scaleServer(ctx, st.ns, st.server, 2); err != nil {
				return err
			}
		}
		var out *standin.ReconcileOutcome
		var rerr error
		// a conflict (kube-controller-manager wrote the status meanwhile)
		// is the controller's requeue: reconcile again
		_ = util.Poll(20*time.Second, func() error {
			out, rerr = st.si.ReconcileServer(ctx, st.ns, st.server, false)
			if apierrors.IsConflict(rerr) {
				return rerr
			}
			return nil
		})
		results[st.rec] = rerr
		if out == nil || out.Op != st.wantOp {
			op := "<none>"
			if out != nil {
				op = out.Op
			}
			util.Step("standin-calibration: record %d: the stand-in's reconcile did %s (want %s): %v", st.rec, op, st.wantOp, rerr)
		}
	}

	// the comparisons, one check per trace record
	names := map[int]string{2: "create-statefulset", 3: "scale-update", 7: "create-statefulset-controller-namespace",
		61: "create-deployment-refused", 147: "create-deployment", 150: "scale-update-deployment"}
	for _, st := range steps {
		rec := trace[st.rec]
		ok, detail := s.compareWithTrace(t0, rec, st.si, st.ns, canon, results[st.rec])
		s.r.Check(checkName(sc, names[st.rec]), ok, "trace record %d (%s %s %s/%s by %s, %d): %s",
			rec.Record, rec.Verb, rec.Resource, rec.Namespace, rec.Name, rec.UserAgent, rec.Code, detail)
	}

	s.calibrationPreMutation(t0, trace[2], sts, nsA)
	s.calibrationFieldManagers(ctx, nsA, nsD)
	s.calibrationServices(ctx, sts, nsA, nsD)
	s.calibrationStatus(ctx, nsA)
	s.calibrationNoServerConfig(ctx, t0, standin.Mode291, nsA, nsSys)
	s.calibrationNoServerConfig(ctx, t0, standin.Mode2102Deployment, nsD, nsSys)
	return nil
}

// replayCreate creates an object of the trace (or of servers.yaml) in the
// replay's namespace, without the fields the API server sets.
func (s *Suite) replayCreate(ctx context.Context, body map[string]any, nsOf map[string]string, gvr schema.GroupVersionResource) error {
	u := (&unstructured.Unstructured{Object: body}).DeepCopy()
	for _, f := range []string{"creationTimestamp", "resourceVersion", "uid", "generation", "managedFields"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	u.SetNamespace(nsOf[u.GetNamespace()])
	_, err := s.CP.Dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
	return err
}

// waitObserved waits until kube-controller-manager has observed the
// workload (status.observedGeneration set).
func (s *Suite) waitObserved(ctx context.Context, mode standin.ControllerMode, ns, name string) error {
	return util.Poll(30*time.Second, func() error {
		var observed int64
		if mode.Deployments {
			d, err := s.getDeployment(ctx, ns, name)
			if err != nil {
				return err
			}
			observed = d.Status.ObservedGeneration
		} else {
			sts, err := s.CP.GetSTS(ctx, ns, name)
			if err != nil {
				return err
			}
			observed = sts.Status.ObservedGeneration
		}
		if observed == 0 {
			return fmt.Errorf("%s %s/%s: no status from kube-controller-manager yet", mode.WorkloadKind(), ns, name)
		}
		return nil
	})
}

// scaleServer sets the Server's spec.replicas.
func (s *Suite) scaleServer(ctx context.Context, ns, name string, replicas int) error {
	_, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(ns).Patch(ctx, name, types.MergePatchType,
		[]byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)), metav1.PatchOptions{})
	return err
}

// compareWithTrace finds the stand-in's request for the trace record in the
// suite's audit log (the last one with the record's answer) and compares
// the bodies (and, for a refusal, the API server's message).
func (s *Suite) compareWithTrace(t0 time.Time, rec *standin.TraceRecord, si *standin.StandIn, ns string, canon map[string]string, rerr error) (bool, string) {
	evs, err := s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
		return e.UserAgent == si.Mode.UserAgent() && e.Verb == rec.Verb && e.ObjectRef.Resource == rec.Resource &&
			e.ObjectRef.Subresource == "" && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == rec.Name &&
			e.ResponseStatus.Code == rec.Code && !e.DryRun()
	})
	if err != nil {
		return false, err.Error()
	}
	if len(evs) == 0 {
		return false, fmt.Sprintf("the audit log has no %s of %s %s/%s by %s answered %d (the stand-in's reconcile: %v)",
			rec.Verb, rec.Resource, ns, rec.Name, si.Mode.UserAgent(), rec.Code, rerr)
	}
	e := evs[len(evs)-1]
	var got map[string]any
	if err := json.Unmarshal(e.RequestObject, &got); err != nil {
		return false, "the stand-in's requestObject: " + err.Error()
	}
	update := rec.Verb == "update"
	want, wantForm, wantLA, err := standin.Comparable(rec.Request, nil, update)
	if err != nil {
		return false, "the trace's body: " + err.Error()
	}
	have, haveForm, haveLA, err := standin.Comparable(got, canon, update)
	if err != nil {
		return false, "the stand-in's body: " + err.Error()
	}
	diffs := standin.JSONDifferences(want, have)
	if wantForm != haveForm {
		diffs = append(diffs, fmt.Sprintf("seldon.io/last-applied encoding: trace %s, stand-in %s", wantForm, haveForm))
	}
	for _, d := range standin.JSONDifferences(wantLA, haveLA) {
		diffs = append(diffs, "seldon.io/last-applied content"+d)
	}
	if update {
		var resp map[string]any
		_ = json.Unmarshal(e.ResponseObject, &resp)
		if !rec.RequestStatusIsStored {
			diffs = append(diffs, "the trace's Update did not carry the stored status")
		}
		diffs = append(diffs, standin.UpdateStatusFacts(got, resp)...)
		for _, d := range standin.UpdateStatusFacts(rec.Request, map[string]any{"status": rec.Request["status"]}) {
			diffs = append(diffs, "in the trace: "+d)
		}
	}
	if rec.Code >= 300 {
		var st struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(e.ResponseObject, &st)
		if st.Message != rec.ResponseMessage {
			diffs = append(diffs, fmt.Sprintf("refusal: trace %q, stand-in %q", rec.ResponseMessage, st.Message))
		}
	}
	if len(diffs) > 0 {
		if len(diffs) > 6 {
			diffs = append(diffs[:6], fmt.Sprintf("... %d more", len(diffs)-6))
		}
		return false, fmt.Sprintf("%d differences: %s", len(diffs), strings.Join(diffs, "; "))
	}
	what := "uids, resourceVersions, timestamps, namespaces removed"
	if update {
		what += ", and the status, which is the stored one on both sides (also in its last-applied)"
	}
	return true, fmt.Sprintf("the stand-in's %s (answered %d) equals the trace's: request body and seldon.io/last-applied (%s, content equal) with %s",
		rec.Verb, e.ResponseStatus.Code, haveForm, what)
}
