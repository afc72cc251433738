package standin

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/banzaicloud/k8s-objectmatcher/patch"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// StandIn is a STAND-IN for the stock Seldon Core controller (2.9.1, or
// 2.10.2 with or without --use-deployments-for-servers: Mode), which cannot
// be built here (the Go module proxy refuses its modules). One reconcile of
// a Server does what Seldon's Reconcile does (operator/v2.9.1 and v2.10.2,
// controllers/mlops/server_controller.go and reconcilers/server/), minus
// the scheduler (ServerNotify is not called):
//
//   - the ServerConfig is read from the controller namespace, never from the
//     Server's (the defect); none there is the reconcile's error;
//   - in StatefulSet mode the per-replica Services first
//     (standin_services.go), then the workload (standin_build.go): Create
//     when none is stored, else objectmatcher's three-way comparison and a
//     full Update of the desired object only when it finds a difference
//     (the stored status copied in, seldon.io/last-applied written again,
//     then the stored resourceVersion);
//   - the Server's status: any error becomes the workload condition False
//     with the error's text, success the condition from the stored
//     workload plus selector and replicas (standin_status.go). No Events.
//
// It writes with its own clients, whose user agent is the stock
// controller's (manager-<version>/v0.0.0, no field manager), so the API
// server records the same field manager. It produces the INPUT the webhook
// sees; nothing it builds is ever used as an expected result.
//
// Scenarios drive it by hand (Reconcile, Write: a write the scenario wants,
// sent even when the comparison finds nothing: the controller's "next full
// Update", e.g. to check that the webhook turns it into a no-op; see
// keepStoredLastApplied) or as a controller (StandInController, and
// ReconcileServer with force false: the stock controller's own decision).
type StandIn struct {
	// CP is the control plane it writes to
	CP                  *controlplane.ControlPlane
	ControllerNamespace string
	Mode                ControllerMode // zero value: 2.9.1, StatefulSets

	Creates, Updates, NoChange atomic.Int64 // workload writes sent / skipped

	// Warnings collects the admission warnings of its requests.
	Warnings WarningRecorder

	once      sync.Once
	kube      kubernetes.Interface
	dyn       dynamic.Interface
	clientErr error

	mu         sync.Mutex
	strategies map[string]appsv1.DeploymentStrategy
}

// clients are the stand-in's own: the admin's credentials (as in the
// trace, where the controller ran as the admin user) with the stock
// controller's user agent.
func (si *StandIn) clients() (kubernetes.Interface, dynamic.Interface, error) {
	si.once.Do(func() {
		cfg := rest.CopyConfig(si.CP.Rest)
		cfg.UserAgent = si.Mode.UserAgent()
		cfg.WarningHandler = &si.Warnings
		if si.kube, si.clientErr = kubernetes.NewForConfig(cfg); si.clientErr != nil {
			return
		}
		si.dyn, si.clientErr = dynamic.NewForConfig(cfg)
	})
	return si.kube, si.dyn, si.clientErr
}

// SetDeploymentStrategy gives the stand-in a Server's deploymentStrategy.
// The suite installs Seldon 2.9.1's CRDs, whose Server schema has no
// deploymentStrategy (2.10's addition): the API server prunes it from the
// stored Server, exactly as in a cluster upgraded to the 2.10 controller
// without its CRDs. Rather than change the suite's CRDs, a Deployment-mode
// scenario hands the value to the stand-in here; a strategy the stored
// Server does carry (a 2.10 CRD) wins.
func (si *StandIn) SetDeploymentStrategy(ns, name string, st appsv1.DeploymentStrategy) {
	si.mu.Lock()
	defer si.mu.Unlock()
	if si.strategies == nil {
		si.strategies = map[string]appsv1.DeploymentStrategy{}
	}
	si.strategies[ns+"/"+name] = st
}

func (si *StandIn) strategyFor(server *Server) {
	if server.Spec.DeploymentStrategy.Type != "" || server.Spec.DeploymentStrategy.RollingUpdate != nil {
		return
	}
	si.mu.Lock()
	defer si.mu.Unlock()
	if st, ok := si.strategies[server.Namespace+"/"+server.Name]; ok {
		server.Spec.DeploymentStrategy = st
	}
}

// readServer reads the Server as the controller's Get does.
func (si *StandIn) readServer(ctx context.Context, ns, name string) (*unstructured.Unstructured, *Server, error) {
	_, dyn, err := si.clients()
	if err != nil {
		return nil, nil, err
	}
	u, err := dyn.Resource(k8s.GVRServer).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	server, err := serverFrom(u)
	if err != nil {
		return nil, nil, err
	}
	si.strategyFor(server)
	return u, server, nil
}

// readServerConfig is GetServerConfigForServer: the controller namespace's
// ServerConfig of the Server's spec.serverConfig.
func (si *StandIn) readServerConfig(ctx context.Context, server *Server) (*ServerConfig, error) {
	if server.Spec.ServerConfig == "" {
		return nil, si.Mode.serverConfigError(fmt.Errorf("ServerType not specified and is required"))
	}
	_, dyn, err := si.clients()
	if err != nil {
		return nil, err
	}
	u, err := dyn.Resource(k8s.GVRServerConfig).Namespace(si.ControllerNamespace).Get(ctx, server.Spec.ServerConfig, metav1.GetOptions{})
	if err != nil {
		return nil, si.Mode.serverConfigError(err)
	}
	return serverConfigFrom(u)
}

// inputs reads the Server and its ServerConfig and validates the replicas.
func (si *StandIn) inputs(ctx context.Context, ns, name string) (*Server, *ServerConfig, error) {
	_, server, err := si.readServer(ctx, ns, name)
	if err != nil {
		return nil, nil, err
	}
	replicas, err := si.Mode.validatedReplicas(server.Spec)
	if err != nil {
		return nil, nil, err
	}
	server.Spec.Replicas = &replicas
	sc, err := si.readServerConfig(ctx, server)
	return server, sc, err
}

// Build reads the Server and -- like the stock controller -- the
// ServerConfig from the controller namespace, and returns the StatefulSet
// the controller would create. A missing ServerConfig is the controller's
// not-found error.
func (si *StandIn) Build(ctx context.Context, ns, name string) (*appsv1.StatefulSet, error) {
	if si.Mode.Deployments {
		return nil, fmt.Errorf("stand-in %s builds Deployments", si.Mode)
	}
	server, sc, err := si.inputs(ctx, ns, name)
	if err != nil {
		return nil, fmt.Errorf("stand-in controller: %w", err)
	}
	return Desired(server, sc)
}

// BuildDeployment is Build for 2.10.2's Deployment mode.
func (si *StandIn) BuildDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	if !si.Mode.Deployments {
		return nil, fmt.Errorf("stand-in %s builds StatefulSets", si.Mode)
	}
	server, sc, err := si.inputs(ctx, ns, name)
	if err != nil {
		return nil, fmt.Errorf("stand-in controller: %w", err)
	}
	return DesiredDeployment(server, sc)
}

// ReconcileOutcome is what one reconcile did.
type ReconcileOutcome struct {
	Op       string // "create", "update", "no-change"; "" when no workload was written
	Patch    string // objectmatcher's patch, when it found a difference
	Terminal bool   // an error the controller does not retry (2.10.2's invalid scaling spec)
	NotFound bool   // no ServerConfig of the name in the controller namespace

	SentSTS, StoredSTS               *appsv1.StatefulSet
	SentDeployment, StoredDeployment *appsv1.Deployment
}

// ReconcileServer is one reconcile of the Server ns/name. force: send the
// Update even when objectmatcher finds nothing (and retry a conflict);
// false is the stock controller's own decision.
func (si *StandIn) ReconcileServer(ctx context.Context, ns, name string, force bool) (*ReconcileOutcome, error) {
	out := &ReconcileOutcome{}
	u, server, err := si.readServer(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && !force {
			return out, nil // deleted: the garbage collector removes what it owned
		}
		return out, err
	}
	if u.GetDeletionTimestamp() != nil {
		return out, nil
	}
	replicas, err := si.Mode.validatedReplicas(server.Spec)
	if err != nil {
		si.statusFromError(ctx, u, err)
		out.Terminal = true
		return out, err
	}
	server.Spec.Replicas = &replicas
	sc, err := si.readServerConfig(ctx, server)
	if err != nil {
		out.NotFound = apierrors.IsNotFound(err)
		si.statusFromError(ctx, u, err)
		return out, err
	}
	var ready int32
	if si.Mode.Deployments {
		desired, err := DesiredDeployment(server, sc)
		if err != nil {
			return out, err
		}
		out.SentDeployment = desired
		err = si.retryIf(force, func() error {
			var err error
			out.SentDeployment, out.StoredDeployment, out.Op, out.Patch, err = si.writeDeployment(ctx, desired, force)
			return err
		})
		if err != nil {
			si.statusFromError(ctx, u, err)
			return out, err
		}
		ready = out.StoredDeployment.Status.ReadyReplicas
	} else {
		if err := si.reconcileServices(ctx, server, int(replicas)); err != nil {
			si.statusFromError(ctx, u, err)
			return out, err
		}
		desired, err := Desired(server, sc)
		if err != nil {
			return out, err
		}
		out.SentSTS = desired
		err = si.retryIf(force, func() error {
			var err error
			out.SentSTS, out.StoredSTS, out.Op, out.Patch, err = si.writeStatefulSet(ctx, desired, force)
			return err
		})
		if err != nil {
			si.statusFromError(ctx, u, err)
			return out, err
		}
		ready = out.StoredSTS.Status.ReadyReplicas
	}
	if err := si.statusFromWorkload(ctx, u, name, replicas, ready); err != nil {
		if !force {
			return out, err // the controller requeues
		}
		// the workload write the scenario wanted was done
		util.Step("stand-in controller %s: Server %s/%s: status: %v", si.Mode, ns, name, err)
	}
	return out, nil
}

// retryIf retries f on conflicts when the scenario drives the stand-in by
// hand (the controller itself requeues instead).
func (si *StandIn) retryIf(force bool, f func() error) error {
	if !force {
		return f()
	}
	return retry.RetryOnConflict(retry.DefaultRetry, f)
}

// Reconcile is one reconcile whose workload write the scenario wants
// (force): Create when none is stored, else a full Update. It returns the
// StatefulSet as sent and as stored.
func (si *StandIn) Reconcile(ctx context.Context, ns, name string) (sent, stored *appsv1.StatefulSet, err error) {
	if si.Mode.Deployments {
		return nil, nil, fmt.Errorf("stand-in %s builds Deployments", si.Mode)
	}
	out, err := si.ReconcileServer(ctx, ns, name, true)
	return out.SentSTS, out.StoredSTS, err
}

// Write creates or fully updates the given desired StatefulSet (always
// sent, as Reconcile). A conflict is retried with the fresh resourceVersion.
func (si *StandIn) Write(ctx context.Context, desired *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	var out *appsv1.StatefulSet
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		_, out, _, _, err = si.writeStatefulSet(ctx, desired, true)
		return err
	})
	return out, err
}

// writeStatefulSet is ServerStatefulSetReconciler.Reconcile for the desired
// object (as built: last-applied set, owner reference added).
func (si *StandIn) writeStatefulSet(ctx context.Context, desired *appsv1.StatefulSet, force bool) (sent, stored *appsv1.StatefulSet, op, patchText string, err error) {
	kube, _, err := si.clients()
	if err != nil {
		return nil, nil, "", "", err
	}
	return writeWorkload(ctx, si, kube.AppsV1().StatefulSets(desired.Namespace), "StatefulSet", desired, force, standinSTSOptions,
		func(sent, found *appsv1.StatefulSet) { sent.Status = found.Status })
}

// writeDeployment is 2.10.2's ServerDeploymentReconciler.Reconcile.
func (si *StandIn) writeDeployment(ctx context.Context, desired *appsv1.Deployment, force bool) (sent, stored *appsv1.Deployment, op, patchText string, err error) {
	kube, _, err := si.clients()
	if err != nil {
		return nil, nil, "", "", err
	}
	return writeWorkload(ctx, si, kube.AppsV1().Deployments(desired.Namespace), "Deployment", desired, force, standinDeploymentOptions,
		func(sent, found *appsv1.Deployment) { sent.Status = found.Status })
}

// workloadObject is a typed workload (*appsv1.StatefulSet, *appsv1.Deployment).
type workloadObject[T any] interface {
	runtime.Object
	metav1.Object
	DeepCopy() T
}

// workloadClient is the typed client of one workload kind in a namespace.
type workloadClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// writeWorkload is what both reconcilers do with their desired object:
// create it when missing; else compare with objectmatcher (the kind's
// options) and, on a difference (or when forced), send a full Update with
// the stored status and a fresh seldon.io/last-applied.
func writeWorkload[T workloadObject[T]](ctx context.Context, si *StandIn, api workloadClient[T], kind string, desired T, force bool,
	opts []patch.CalculateOption, keepStatus func(sent, found T)) (sent, stored T, op, patchText string, err error) {
	var none T
	found, err := api.Get(ctx, desired.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		sent = desired.DeepCopy()
		si.Creates.Add(1)
		si.logWrite(force, "create %s %s/%s", kind, desired.GetNamespace(), desired.GetName())
		stored, err = api.Create(ctx, sent.DeepCopy(), metav1.CreateOptions{})
		return sent, stored, "create", "", err
	}
	if err != nil {
		return none, none, "", "", err
	}
	res, err := standinPatchMaker.Calculate(found, desired, opts...)
	if err != nil {
		return none, none, "", "", err
	}
	sent = desired.DeepCopy()
	keepStatus(sent, found)
	if res.IsEmpty() && !force {
		si.NoChange.Add(1)
		return none, found, "no-change", "", nil
	}
	if !res.IsEmpty() {
		patchText = string(res.Patch)
	}
	delete(sent.GetAnnotations(), lastAppliedAnnotation)
	if err := lastApplied.SetLastAppliedAnnotation(sent); err != nil {
		return none, none, "", "", err
	}
	if force {
		keepStoredLastApplied(sent.GetAnnotations(), found.GetAnnotations())
	}
	// after the annotation, as Seldon does ("to also avoid false differences")
	sent.SetResourceVersion(found.GetResourceVersion())
	si.Updates.Add(1)
	si.logWrite(force, "full Update of %s %s/%s (objectmatcher patch %s)", kind, desired.GetNamespace(), desired.GetName(), util.OneLine(patchText))
	stored, err = api.Update(ctx, sent.DeepCopy(), metav1.UpdateOptions{})
	return sent, stored, "update", patchText, err
}

// keepStoredLastApplied: a write a scenario forces keeps the stored
// seldon.io/last-applied when the new one would differ only in the status
// it records. The stock controller writes such a status-only change once
// after each status change, as soon as its Owns watch sees it; a scenario
// forcing the controller's Update at a moment of its choosing (often the
// same desired object again, which the stock controller would not send at
// all) would otherwise make that one-time write land in its measurement.
// The controller's own decisions (ReconcileServer with force false,
// StandInController) always write the annotation as Seldon does.
func keepStoredLastApplied(sent, stored map[string]string) {
	now, old := sent[lastAppliedAnnotation], stored[lastAppliedAnnotation]
	if now == old || old == "" {
		return
	}
	decode := func(v string) map[string]any {
		_, content := decodeLastApplied(v)
		var m map[string]any
		if json.Unmarshal(content, &m) != nil {
			return nil
		}
		delete(m, "status")
		return m
	}
	a, b := decode(now), decode(old)
	if a != nil && b != nil && reflect.DeepEqual(a, b) {
		sent[lastAppliedAnnotation] = old
	}
}

// logWrite reports a workload write on stderr: always for the
// controller's own decisions, with -v also for the writes scenarios force
// (load loops send hundreds).
func (si *StandIn) logWrite(force bool, format string, args ...any) {
	if force && !util.Verbose {
		return
	}
	util.Step("stand-in controller %s: "+format, append([]any{si.Mode}, args...)...)
}

// WarningRecorder keeps the admission warnings the API server returned to
// a client (rest.WarningHandler): the stand-in's, the oracle's.
type WarningRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (w *WarningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// Matching returns the warnings that contain sub.
func (w *WarningRecorder) Matching(sub string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, t := range w.seen {
		if strings.Contains(t, sub) {
			out = append(out, t)
		}
	}
	return out
}

// Reset forgets the warnings seen so far.
func (w *WarningRecorder) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = nil
}

// All is every warning seen, in order, on one line.
func (w *WarningRecorder) All() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.seen, " | ")
}
