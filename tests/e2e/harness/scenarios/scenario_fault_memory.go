package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

const (
	memConfigs    = 10000 // ServerConfigs in watched namespaces (issue 7)
	memNamespaces = 10
	memServers    = 100
	memUnwatched  = 500 // ServerConfigs in a namespace the webhook does not watch
	memUnwatchNS  = "mem-unwatched"
	shippedLimit  = 512 << 20 // the shipped Deployment's memory limit (512Mi)
)

// faultBenchScenarios are the fault scenarios too slow for every run (the
// 10,000-object memory figure): run them with SERVERCONFIG_E2E_MEMORY=1,
// e.g. `SERVERCONFIG_E2E_MEMORY=1 cargo xtask e2e --release --run fault-memory`.
func faultBenchScenarios() []Scenario {
	var out []Scenario
	if os.Getenv("SERVERCONFIG_E2E_MEMORY") != "" {
		out = append(out, Scenario{"fault-memory", scenarioFaultMemory})
	}
	// SERVERCONFIG_E2E_ATTACKS=1: what a client reaching the port can do
	// to memory and descriptors (scenario_fault_clients.go)
	if os.Getenv("SERVERCONFIG_E2E_ATTACKS") != "" {
		out = append(out, Scenario{"fault-hostile-clients", scenarioFaultClients})
	}
	return out
}

// procMemory reads VmRSS and VmHWM (bytes) from /proc/PID/status.
func procMemory(pid int) (rss, hwm int64, err error) {
	st, err := util.ReadProcStatus(pid)
	return st.RSSKiB << 10, st.HWMKiB << 10, err
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// createMany creates objects with workers concurrent clients (QPS limits
// raised); already-existing objects count as created.
func createMany(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, workers int) error {
	ch := make(chan *unstructured.Unstructured)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range ch {
				gvr := k8s.GVRServerConfig
				if o.GetKind() == "Server" {
					gvr = k8s.GVRServer
				}
				_, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{FieldManager: k8s.FieldManager})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, o := range objs {
		ch <- o
	}
	close(ch)
	wg.Wait()
	return first
}

// scenarioFaultMemory: 10,000 ServerConfigs and 100 Servers in 10 watched
// namespaces, 500 ServerConfigs in an unwatched one, created through the
// real API server. A webhook replica (shipped flags without --sync, plus
// --watch-namespaces) is measured before, after its watches took them in,
// and after a fresh start that lists them all. Figures: VmRSS / VmHWM;
// checks: the cache holds exactly the watched namespaces' objects
// (cache_objects) and RSS stays under the shipped 512Mi limit.
func scenarioFaultMemory(ctx context.Context, s *Suite) error {
	const sc = "fault-memory"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	var watched []string
	for i := 0; i < memNamespaces; i++ {
		watched = append(watched, fmt.Sprintf("mem-%d", i))
	}
	for _, ns := range append(watched, memUnwatchNS) {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// the suite's webhook (all namespaces, --sync) would plan placeholders
	// for every one of them: it is stopped until the namespaces are gone
	s.WH.Stop()
	defer func() {
		cctx := context.Background()
		for _, ns := range append(watched, memUnwatchNS) {
			_ = s.CP.Kube.CoreV1().Namespaces().Delete(cctx, ns, metav1.DeleteOptions{})
		}
		err := util.Poll(5*time.Minute, func() error {
			for _, ns := range append(watched, memUnwatchNS) {
				if _, err := s.CP.Kube.CoreV1().Namespaces().Get(cctx, ns, metav1.GetOptions{}); err == nil {
					return fmt.Errorf("namespace %s still there", ns)
				}
			}
			return nil
		})
		s.r.Check(checkName(sc, "cleaned-up"), err == nil, "namespaces mem-* deleted %v", err)
		if err := s.needWebhook(cctx); err != nil {
			s.r.Fail(checkName(sc, "restore-webhook"), err)
		}
	}()

	w := s.WH.ReplicaWithoutSync("serverconfig-webhook-memory", "serverconfig-webhook-e2e-memory")
	w.ExtraArgs = []string{"--watch-namespaces=" + strings.Join(watched, ",")}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	time.Sleep(time.Second)
	rss0, hwm0, err := procMemory(w.Pid())
	if err != nil {
		return err
	}

	var objs []*unstructured.Unstructured
	for i := 0; i < memConfigs; i++ {
		ns := watched[i%memNamespaces]
		o := s.teamConfig(ns, fmt.Sprintf("cfg-%05d", i))
		objs = append(objs, o)
	}
	for i := 0; i < memServers; i++ {
		ns := watched[i%memNamespaces]
		objs = append(objs, k8s.NewServer(ns, fmt.Sprintf("srv-%03d", i), fmt.Sprintf("cfg-%05d", i), 1, nil))
	}
	for i := 0; i < memUnwatched; i++ {
		objs = append(objs, s.teamConfig(memUnwatchNS, fmt.Sprintf("cfg-%05d", i)))
	}
	fast := rest.CopyConfig(s.CP.Rest)
	fast.QPS, fast.Burst = 5000, 10000
	dyn, err := dynamic.NewForConfig(fast)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := createMany(ctx, dyn, objs, 32); err != nil {
		return err
	}
	created := time.Since(t0)
	util.Step("%s: created %d objects in %s (%.0f/s)", sc, len(objs), secs(created), float64(len(objs))/created.Seconds())

	ctlConfigs, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(k8s.ControllerNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	wantSC := float64(memConfigs + len(ctlConfigs.Items))
	cached := func() (float64, float64) {
		m := w.Metrics()
		return metricValue(m, "serverconfig_webhook_cache_objects", `kind="ServerConfig"`),
			metricValue(m, "serverconfig_webhook_cache_objects", `kind="Server"`)
	}
	var gotSC, gotSrv float64
	err = util.Poll(120*time.Second, func() error {
		gotSC, gotSrv = cached()
		if gotSC != wantSC || gotSrv != memServers {
			return fmt.Errorf("cache_objects ServerConfig %v (want %v), Server %v (want %d)", gotSC, wantSC, gotSrv, memServers)
		}
		return nil
	})
	s.r.Check(checkName(sc, "only-watched-cached"), err == nil,
		"cache_objects: %v ServerConfigs (%d in %d watched namespaces + %d in %s; the %d in %s not cached), %v Servers %v",
		gotSC, memConfigs, memNamespaces, len(ctlConfigs.Items), k8s.ControllerNS, memUnwatched, memUnwatchNS, gotSrv, err)
	time.Sleep(2 * time.Second)
	rss1, hwm1, err := procMemory(w.Pid())
	if err != nil {
		return err
	}

	// a fresh start: the initial list of all of them
	w.Stop()
	t1 := time.Now()
	if err := w.Start(); err != nil {
		return err
	}
	ready := time.Since(t1)
	err = util.Poll(60*time.Second, func() error {
		gotSC, gotSrv = cached()
		if gotSC != wantSC || gotSrv != memServers {
			return fmt.Errorf("cache_objects ServerConfig %v, Server %v", gotSC, gotSrv)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	rss2, hwm2, perr := procMemory(w.Pid())
	if perr != nil {
		return perr
	}

	// what one object weighs in the API server, with and without managedFields
	one, gerr := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(watched[0]).Get(ctx, "cfg-00000", metav1.GetOptions{})
	var withMF, withoutMF int
	if gerr == nil {
		b, _ := json.Marshal(one.Object)
		withMF = len(b)
		one.SetManagedFields(nil)
		b, _ = json.Marshal(one.Object)
		withoutMF = len(b)
	}
	perObj := float64(rss2-rss0) / float64(memConfigs+memServers)
	s.r.Check(checkName(sc, "rss-under-shipped-limit"), err == nil && rss1 < shippedLimit && rss2 < shippedLimit && hwm2 < shippedLimit,
		"VmRSS empty %s (HWM %s); after the watches took %d objects in: %s (HWM %s); fresh start listing them (ready in %s): %s (HWM %s); shipped limit 512Mi; %.0f bytes of RSS per cached object vs %d bytes of JSON with managedFields, %d without %v",
		mib(rss0), mib(hwm0), memConfigs+memServers, mib(rss1), mib(hwm1), secs(ready), mib(rss2), mib(hwm2), perObj, withMF, withoutMF, err)
	util.Step("FIGURE %s: %d ServerConfigs + %d Servers cached: VmRSS %s, VmHWM %s (fresh start); %s / %s after watch; empty %s; objects created in %s",
		sc, memConfigs, memServers, mib(rss2), mib(hwm2), mib(rss1), mib(hwm1), mib(rss0), secs(created))
	return nil
}
