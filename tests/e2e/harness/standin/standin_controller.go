package standin

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// StandInController is the STAND-IN for the stock Seldon Server controller
// running as a controller (the stock one cannot be built here: the Go
// module proxy refuses github.com/seldonio/seldon-core modules). Around a
// StandIn (one reconcile as Seldon's; its Mode picks 2.9.1 or 2.10.2,
// StatefulSets or Deployments) it has what controller-runtime gives the
// stock one (SetupWithManager):
//
//   - For(Server), Owns(StatefulSet) -- Owns(Deployment) in 2.10.2's
//     Deployment mode -- and Owns(Service): a change of a Server, or of an
//     object it controls, reconciles that Server;
//   - Watches(ServerConfig): a ServerConfig named X changing in ANY
//     namespace reconciles every Server whose spec.serverConfig is X and
//     whose disableAutoUpdate is false;
//   - a work queue with controller-runtime's default rate limiter
//     (workqueue.DefaultTypedControllerRateLimiter: 5 ms doubling to
//     1000 s per item, 10 qps overall): an error requeues with backoff, a
//     terminal one (2.10.2's invalid scaling spec) does not.
//
// Its Updates are decided by the real objectmatcher (standin_compare.go)
// and counted. It manages only Servers in the namespaces it is given, so
// it never competes with the scenarios that drive StandIn.Reconcile by hand.
type StandInController struct {
	si         *StandIn
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

// StartController runs the given stand-in (its mode, its
// deployment strategies, its warnings) as a controller for the Servers of
// the given namespaces.
func StartController(ctx context.Context, si *StandIn, namespaces ...string) (*StandInController, error) {
	kube, dync, err := si.clients()
	if err != nil {
		return nil, err
	}
	c := &StandInController{
		si: si, namespaces: map[string]bool{},
		q:        workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		notFound: map[string]string{}, lastPatch: map[string]string{},
	}
	for _, ns := range namespaces {
		c.namespaces[ns] = true
	}
	cctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel

	dyn := dynamicinformer.NewDynamicSharedInformerFactory(dync, 0)
	srvInf := dyn.ForResource(k8s.GVRServer).Informer()
	scInf := dyn.ForResource(k8s.GVRServerConfig).Informer()
	wf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "app.kubernetes.io/name=seldon-server"
	}))
	var wlInf cache.SharedIndexInformer
	if si.Mode.Deployments {
		wlInf = wf.Apps().V1().Deployments().Informer()
	} else {
		wlInf = wf.Apps().V1().StatefulSets().Informer()
	}
	svcf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = ServerReplicaLabel
	}))
	svcInf := svcf.Core().V1().Services().Informer()
	c.servers = srvInf.GetStore()

	unwrap := func(obj any) any {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			return t.Obj
		}
		return obj
	}
	handlers := func(f func(any)) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n any) { f(n) }, DeleteFunc: f}
	}
	_, _ = srvInf.AddEventHandler(handlers(func(obj any) {
		if u, ok := unwrap(obj).(*unstructured.Unstructured); ok && c.namespaces[u.GetNamespace()] {
			c.q.Add(u.GetNamespace() + "/" + u.GetName())
		}
	}))
	_, _ = scInf.AddEventHandler(handlers(func(obj any) {
		u, ok := unwrap(obj).(*unstructured.Unstructured)
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
	}))
	enqOwner := func(obj any) {
		o, ok := unwrap(obj).(metav1.Object)
		if !ok || !c.namespaces[o.GetNamespace()] {
			return
		}
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "Server" {
			c.q.Add(o.GetNamespace() + "/" + ref.Name)
		}
	}
	_, _ = wlInf.AddEventHandler(handlers(enqOwner))
	_, _ = svcInf.AddEventHandler(handlers(enqOwner))
	dyn.Start(cctx.Done())
	wf.Start(cctx.Done())
	svcf.Start(cctx.Done())
	if !cache.WaitForCacheSync(cctx.Done(), srvInf.HasSynced, scInf.HasSynced, wlInf.HasSynced, svcInf.HasSynced) {
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
			terminal, err := c.reconcile(cctx, key)
			if err != nil && !terminal && cctx.Err() == nil {
				c.q.AddRateLimited(key)
			} else {
				c.q.Forget(key)
			}
			c.q.Done(key)
		}
	}()
	util.Step("stand-in controller %s: started for namespaces %v", si.Mode, namespaces)
	return c, nil
}

// StandIn is the stand-in this controller runs.
func (c *StandInController) StandIn() *StandIn { return c.si }

func (c *StandInController) Stop() {
	c.once.Do(func() {
		c.cancel()
		c.q.ShutDown()
		c.done.Wait()
		util.Step("stand-in controller %s: stopped (%d reconciles, %d creates, %d updates, %d no-change, %d not-found)",
			c.si.Mode, c.Reconciles.Load(), c.Creates.Load(), c.Updates.Load(), c.NoChange.Load(), c.NotFound.Load())
	})
}

// NotFoundMessage is the last not-found the controller hit for a Server
// (what it wrote into the Server's condition).
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

// reconcile runs one reconcile (the stock controller's decision) and keeps
// the counts; terminal errors are not retried.
func (c *StandInController) reconcile(ctx context.Context, key string) (bool, error) {
	c.Reconciles.Add(1)
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	out, err := c.si.ReconcileServer(ctx, ns, name, false)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case out.NotFound:
		c.NotFound.Add(1)
		msg := err.Error()
		if c.notFound[key] != msg {
			util.Step("stand-in controller %s: Server %s: %s: %s=False, nothing built", c.si.Mode, key, msg, c.si.Mode.ConditionType())
		}
		c.notFound[key] = msg
		return false, err
	case out.Op == "create":
		c.Creates.Add(1)
	case out.Op == "update":
		c.Updates.Add(1)
		c.lastPatch[key] = out.Patch
	case out.Op == "no-change":
		c.NoChange.Add(1)
	}
	delete(c.notFound, key)
	if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
		util.Step("stand-in controller %s: Server %s: %v", c.si.Mode, key, util.OneLine(err.Error()))
	}
	return out.Terminal, err
}
