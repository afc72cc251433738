package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banzaicloud/k8s-objectmatcher/patch"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// StandInController is the STAND-IN for the stock Seldon 2.9.1 Server
// controller running as a controller (the stock one cannot be built here:
// the Go module proxy refuses github.com/seldonio/seldon-core modules). It
// behaves like the stock controller where the sync loop matters
// (shared/docs/seldon-controller-behaviour.md sections 1, 5, 6):
//
//   - it reconciles a Server when the Server changes, when its StatefulSet
//     changes (Owns), and when a ServerConfig named X changes in ANY
//     namespace (every Server whose spec.serverConfig is X and whose
//     disableAutoUpdate is false);
//   - it reads the ServerConfig from the controller namespace only (the
//     defect); when there is none it builds nothing and reports the
//     not-found (an Event on the Server, where the stock controller sets the
//     StatefulSetReady=False condition), and retries with backoff;
//   - it compares its desired object with the stored one with the REAL
//     github.com/banzaicloud/k8s-objectmatcher v1.8.0 patch maker, configured
//     as the stock controller does (annotation seldon.io/last-applied,
//     K8sStrategicMergePatcher, BaseJSONMergePatcher, IgnoreStatusFields,
//     IgnoreField kind/apiVersion/metadata,
//     IgnoreVolumeClaimTemplateTypeMetaAndStatus, volumeMode blanked) and
//     sends a full Update only when that finds a difference. Updates are
//     counted.
//
// It manages only Servers in the namespaces it is given, so it never
// competes with the scenarios that drive StandIn.Reconcile by hand.
type StandInController struct {
	s          *Suite
	namespaces map[string]bool
	q          workqueue.TypedRateLimitingInterface[string]
	servers    cache.Store

	Reconciles, Creates, Updates, NoChange, NotFound atomic.Int64

	mu        sync.Mutex
	notFound  map[string]string // Server key -> last not-found message
	lastPatch map[string]string // Server key -> last non-empty patch
	cancel    context.CancelFunc
	done      sync.WaitGroup
	once      sync.Once
}

var lastApplied = patch.NewAnnotator(lastAppliedAnnotation)

var standinPatchMaker = patch.NewPatchMaker(lastApplied, &patch.K8sStrategicMergePatcher{}, &patch.BaseJSONMergePatcher{})

// ignoreVolumeMode blanks volumeClaimTemplates[*].spec.volumeMode on both
// sides (the API server defaults it; the stock controller's option).
func ignoreVolumeMode() patch.CalculateOption {
	strip := func(b []byte) ([]byte, error) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		vcts, _, _ := unstructured.NestedSlice(m, "spec", "volumeClaimTemplates")
		for i, v := range vcts {
			if vm, ok := v.(map[string]any); ok {
				if sp, ok := vm["spec"].(map[string]any); ok {
					delete(sp, "volumeMode")
				}
				vcts[i] = vm
			}
		}
		if len(vcts) > 0 {
			_ = unstructured.SetNestedSlice(m, vcts, "spec", "volumeClaimTemplates")
		}
		return json.Marshal(m)
	}
	return func(cur, mod []byte) ([]byte, []byte, error) {
		c, err := strip(cur)
		if err != nil {
			return nil, nil, err
		}
		m, err := strip(mod)
		return c, m, err
	}
}

var standinCalculateOptions = []patch.CalculateOption{
	patch.IgnoreStatusFields(),
	patch.IgnoreVolumeClaimTemplateTypeMetaAndStatus(),
	patch.IgnoreField("kind"),
	patch.IgnoreField("apiVersion"),
	patch.IgnoreField("metadata"),
	ignoreVolumeMode(),
}

// StartStandInController starts the stand-in controller for the Servers of
// the given namespaces; Stop ends it ("controller down"), and starting a new
// one is a controller restart (its initial list reconciles every Server).
func (s *Suite) StartStandInController(ctx context.Context, namespaces ...string) (*StandInController, error) {
	c := &StandInController{
		s: s, namespaces: map[string]bool{},
		q:        workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 10*time.Second)),
		notFound: map[string]string{}, lastPatch: map[string]string{},
	}
	for _, ns := range namespaces {
		c.namespaces[ns] = true
	}
	cctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel

	dyn := dynamicinformer.NewDynamicSharedInformerFactory(s.cp.Dyn, 0)
	srvInf := dyn.ForResource(gvrServer).Informer()
	scInf := dyn.ForResource(gvrServerConfig).Informer()
	kf := informers.NewSharedInformerFactoryWithOptions(s.cp.Kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "app.kubernetes.io/name=seldon-server"
	}))
	stsInf := kf.Apps().V1().StatefulSets().Informer()
	c.servers = srvInf.GetStore()

	enqServer := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok || !c.namespaces[u.GetNamespace()] {
			return
		}
		c.q.Add(u.GetNamespace() + "/" + u.GetName())
	}
	_, _ = srvInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqServer, UpdateFunc: func(_, n any) { enqServer(n) }, DeleteFunc: enqServer,
	})
	enqUsers := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		for _, o := range c.servers.List() {
			su := o.(*unstructured.Unstructured)
			if !c.namespaces[su.GetNamespace()] {
				continue
			}
			name, _, _ := unstructured.NestedString(su.Object, "spec", "serverConfig")
			dis, _, _ := unstructured.NestedBool(su.Object, "spec", "disableAutoUpdate")
			if name == u.GetName() && !dis {
				c.q.Add(su.GetNamespace() + "/" + su.GetName())
			}
		}
	}
	_, _ = scInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqUsers, UpdateFunc: func(_, n any) { enqUsers(n) }, DeleteFunc: enqUsers,
	})
	enqOwner := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		sts, ok := obj.(*appsv1.StatefulSet)
		if !ok || !c.namespaces[sts.Namespace] {
			return
		}
		if ref := metav1.GetControllerOf(sts); ref != nil && ref.Kind == "Server" {
			c.q.Add(sts.Namespace + "/" + ref.Name)
		}
	}
	_, _ = stsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqOwner, UpdateFunc: func(_, n any) { enqOwner(n) }, DeleteFunc: enqOwner,
	})
	dyn.Start(cctx.Done())
	kf.Start(cctx.Done())
	if !cache.WaitForCacheSync(cctx.Done(), srvInf.HasSynced, scInf.HasSynced, stsInf.HasSynced) {
		cancel()
		return nil, fmt.Errorf("stand-in controller: caches did not sync")
	}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		for {
			key, quit := c.q.Get()
			if quit {
				return
			}
			err := c.reconcile(cctx, key)
			if err != nil && cctx.Err() == nil {
				c.q.AddRateLimited(key)
			} else {
				c.q.Forget(key)
			}
			c.q.Done(key)
		}
	}()
	step("stand-in controller: started for namespaces %v", namespaces)
	return c, nil
}

func (c *StandInController) Stop() {
	c.once.Do(func() {
		c.cancel()
		c.q.ShutDown()
		c.done.Wait()
		step("stand-in controller: stopped (%d reconciles, %d creates, %d updates, %d no-change, %d not-found)",
			c.Reconciles.Load(), c.Creates.Load(), c.Updates.Load(), c.NoChange.Load(), c.NotFound.Load())
	})
}

// NotFoundMessage is the last not-found the controller reported for a Server.
func (c *StandInController) NotFoundMessage(ns, name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notFound[ns+"/"+name]
}

func (c *StandInController) LastPatch(ns, name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastPatch[ns+"/"+name]
}

func (c *StandInController) reconcile(ctx context.Context, key string) error {
	c.Reconciles.Add(1)
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	u, err := c.s.cp.Dyn.Resource(gvrServer).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // deleted: the garbage collector removes the StatefulSet
	}
	if err != nil {
		return err
	}
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	server, err := serverFrom(u)
	if err != nil {
		return err
	}
	scu, err := c.s.cp.Dyn.Resource(gvrServerConfig).Namespace(c.s.standin.ControllerNamespace).Get(ctx, server.Spec.ServerConfig, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		msg := fmt.Sprintf("serverconfigs.mlops.seldon.io %q not found (ServerConfig looked up in %s)", server.Spec.ServerConfig, c.s.standin.ControllerNamespace)
		c.NotFound.Add(1)
		c.mu.Lock()
		first := c.notFound[key] != msg
		c.notFound[key] = msg
		c.mu.Unlock()
		if first {
			step("stand-in controller: Server %s: %s: StatefulSetReady=False, nothing built", key, msg)
			c.event(ctx, server, corev1.EventTypeWarning, "StandInStatefulSetNotReady",
				"stand-in for the stock controller (condition StatefulSetReady=False): "+msg)
		}
		return fmt.Errorf("%s", msg)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.notFound, key)
	c.mu.Unlock()
	sc, err := serverConfigFrom(scu)
	if err != nil {
		return err
	}
	desired, err := Desired(server, sc)
	if err != nil {
		return err
	}
	delete(desired.Annotations, lastAppliedAnnotation)

	api := c.s.cp.Kube.AppsV1().StatefulSets(ns)
	found, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if err := lastApplied.SetLastAppliedAnnotation(desired); err != nil {
			return err
		}
		c.Creates.Add(1)
		step("stand-in controller: create StatefulSet %s", key)
		_, err = api.Create(ctx, desired, metav1.CreateOptions{FieldManager: "manager"})
		c.writeRefused(ctx, server, key, err)
		return err
	}
	if err != nil {
		return err
	}
	res, err := standinPatchMaker.Calculate(found, desired, standinCalculateOptions...)
	if err != nil {
		return err
	}
	if res.IsEmpty() {
		c.NoChange.Add(1)
		return nil
	}
	c.mu.Lock()
	c.lastPatch[key] = string(res.Patch)
	c.mu.Unlock()
	if err := lastApplied.SetLastAppliedAnnotation(desired); err != nil {
		return err
	}
	desired.ResourceVersion = found.ResourceVersion
	c.Updates.Add(1)
	step("stand-in controller: full Update of StatefulSet %s (objectmatcher patch %s)", key, oneLine(string(res.Patch)))
	_, err = api.Update(ctx, desired, metav1.UpdateOptions{FieldManager: "manager"})
	c.writeRefused(ctx, server, key, err)
	return err
}

// standinRefused: the last refusal reported per controller and Server.
var standinRefused sync.Map

// writeRefused reports a refused StatefulSet write (e.g. a webhook the API
// server cannot call) as the stock controller does: its reconcile error
// becomes the StatefulSetReady=False condition's message; here a Warning
// Event StandInStatefulSetNotReady on the Server, once per message.
// (Added for the fault scenarios, issue 7.)
func (c *StandInController) writeRefused(ctx context.Context, server *Server, key string, err error) {
	if err == nil || ctx.Err() != nil || apierrors.IsConflict(err) {
		return
	}
	msg := "StatefulSet write refused: " + err.Error()
	if prev, seen := standinRefused.Swap(fmt.Sprintf("%p/%s", c, key), msg); !seen || prev != msg {
		c.event(ctx, server, corev1.EventTypeWarning, "StandInStatefulSetNotReady",
			"stand-in for the stock controller (condition StatefulSetReady=False): "+msg)
	}
}

func (c *StandInController) event(ctx context.Context, server *Server, typ, reason, msg string) {
	now := metav1.Now()
	_, err := c.s.cp.Kube.CoreV1().Events(server.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: server.Name + ".", Namespace: server.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "mlops.seldon.io/v1alpha1", Kind: "Server", Name: server.Name, Namespace: server.Namespace, UID: server.UID,
		},
		Type: typ, Reason: reason, Message: msg, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "e2e-standin-seldon-controller"},
	}, metav1.CreateOptions{})
	if err != nil {
		step("stand-in controller: event: %v", err)
	}
}

// ServerEvents lists the Events on a Server with the given reason.
func (s *Suite) ServerEvents(ctx context.Context, ns, server, reason string) ([]corev1.Event, error) {
	l, err := s.cp.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + server + ",reason=" + reason})
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
