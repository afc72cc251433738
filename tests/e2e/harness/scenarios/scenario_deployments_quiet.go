package scenarios

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioDeploymentsQuiet: the steady state of a Deployment the webhook
// fixed. After convergence a restart of the 2.10.2 controller (stand-in,
// Deployment mode: its initial list compares every Server's Deployment
// with objectmatcher) sends no Update; then, with another restart at its
// start, over --quiet-seconds nothing writes the Deployment: no write in
// the API server's audit log (every write, even a no-op Update a watch
// never sees), no watch event, resourceVersion unchanged; and the
// controller writes no Server status.
func scenarioDeploymentsQuiet(ctx context.Context, s *Suite) error {
	const sc = "deployments-quiet"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	c, err := s.startDepController(ctx)
	if err != nil {
		return err
	}
	defer func() { c.Stop() }()
	if _, err := s.settledDeployment(ctx, depNS, depServer); err != nil {
		return err
	}
	restart := func() error {
		c.Stop()
		if c, err = s.StartStandInControllerFor(ctx, s.depStandIn(depNS, depServer), depNS); err != nil {
			return err
		}
		return util.Poll(10*time.Second, func() error {
			if c.NoChange.Load()+c.Updates.Load() == 0 {
				return fmt.Errorf("no comparison after the restart (%d reconciles)", c.Reconciles.Load())
			}
			return nil
		})
	}
	err = restart()
	if _, serr := s.settledDeployment(ctx, depNS, depServer); serr != nil {
		return serr
	}
	s.r.Check(checkName(sc, "restart-no-update"), err == nil && c.Updates.Load() == 0 && c.NoChange.Load() >= 1,
		"after the restart: %d reconciles, %d no-change, %d Updates (patch %s) %v",
		c.Reconciles.Load(), c.NoChange.Load(), c.Updates.Load(), c.LastPatch(depNS, depServer), err)

	// the window, with a restart at its start
	before, err := s.getDeployment(ctx, depNS, depServer)
	if err != nil {
		return err
	}
	since := time.Now()
	w, err := s.CP.Kube.AppsV1().Deployments(depNS).Watch(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + depServer, ResourceVersion: before.ResourceVersion,
	})
	if err != nil {
		return err
	}
	// what the watch delivered in the window (type and resourceVersion);
	// its own end (Stop may close the stream with an error) is not counted
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			rv := ""
			if o, ok := ev.Object.(metav1.Object); ok {
				rv = o.GetResourceVersion()
			}
			if st, ok := ev.Object.(*metav1.Status); ok {
				rv = st.Message
			}
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s@%s", ev.Type, rv))
			mu.Unlock()
		}
	}()
	rerr := restart()
	window := time.Duration(s.Cfg.QuietSeconds) * time.Second
	time.Sleep(window)
	mu.Lock()
	inWindow := append([]string(nil), seen...)
	mu.Unlock()
	w.Stop()
	<-done
	after, err := s.getDeployment(ctx, depNS, depServer)
	if err != nil {
		return err
	}
	writes, changes, detail, last, aerr := s.CP.WorkloadWrites(since, "deployments", depNS, map[string]string{depServer: before.ResourceVersion})
	s.r.Check(checkName(sc, "window-quiet"), rerr == nil && aerr == nil && writes == 0 && len(inWindow) == 0 &&
		after.ResourceVersion == last[depServer] && c.Updates.Load() == 0 && c.NoChange.Load() >= 1,
		"%v window after a controller restart: %d writes in the audit log (%d changed it) %v, watch events %v, resourceVersion %s -> %s (after status writes %s); the stand-in made %d comparisons, %d found no change, sent %d Updates %v %v",
		window, writes, changes, detail, inWindow, before.ResourceVersion, after.ResourceVersion, last[depServer], c.Reconciles.Load(), c.NoChange.Load(), c.Updates.Load(), rerr, aerr)
	status, serr := s.CP.AuditEvents(since, func(e controlplane.AuditEvent) bool {
		return e.UserAgent == standin.Mode2102Deployment.UserAgent() && e.ObjectRef.Resource == "servers" && e.ObjectRef.Namespace == depNS &&
			e.ObjectRef.Name == depServer && e.Verb != "get"
	})
	s.r.Check(checkName(sc, "no-server-status-writes"), serr == nil && len(status) == 0,
		"writes of Server %s/%s by %s in the window: %d (its status is unchanged, so the controller writes none) %v",
		depNS, depServer, standin.Mode2102Deployment.UserAgent(), len(status), serr)
	util.Step("deployments-quiet: the stand-in controller sent %d Updates in the %v window", c.Updates.Load(), window)
	return nil
}
