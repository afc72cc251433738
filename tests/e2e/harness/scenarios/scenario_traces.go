package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The traces scenarios (issue: OpenTelemetry tracing). A real OTLP
// receiver (the pinned OpenTelemetry Collector, file exporter) and a
// second kube-apiserver on the suite's etcd whose --tracing-config-file
// points at it, sampling every request: the suite's own API server stays
// untraced, so no other scenario pays for tracing. StatefulSets are
// created through the traced API server, which calls the suite's
// registration (the same webhook URL) and sends W3C trace context with
// the call.

// tracing is the collector and the traced API server, started by the
// first traces scenario and shared by the next (the harness's teardown
// ends both).
type tracing struct {
	col  *controlplane.Collector
	kube kubernetes.Interface
}

var sharedTracing *tracing

func (s *Suite) tracing() (*tracing, error) {
	if sharedTracing != nil {
		return sharedTracing, nil
	}
	col, err := controlplane.StartCollector(s.Cfg.Otelcol, s.CP.Dir, logDir(s), s.Cfg.StartupWait)
	if err != nil {
		return nil, err
	}
	cfgPath, err := controlplane.TracingConfig(s.CP.Dir, s.CP.Minor, col)
	if err != nil {
		return nil, err
	}
	// no audit flags: the suite's audit log has one writer
	_, kube, _, _, err := s.CP.SecondAPIServerWith("kube-apiserver-traced", []string{"--audit-"},
		[]string{"--tracing-config-file=" + cfgPath})
	if err != nil {
		return nil, err
	}
	sharedTracing = &tracing{col: col, kube: kube}
	return sharedTracing, nil
}

func logDir(s *Suite) string { return s.CP.Dir + "/logs" }

// withWebhook runs f with the suite's webhook replaced by a copy (same
// port, certificate, identity and shipped flags) with extra flags and
// environment; the suite's webhook is back afterwards.
func (s *Suite) withWebhook(ctx context.Context, procName string, args, env []string, f func() error) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	w := *s.WH
	w.Proc, w.ProcName = nil, procName
	w.ExtraArgs = append(append([]string{}, s.WH.ExtraArgs...), args...)
	w.ExtraEnv = append(append([]string{}, s.WH.ExtraEnv...), env...)
	s.WH.Stop()
	err := w.Start()
	if err == nil {
		err = f()
	}
	w.Stop()
	if rerr := s.WH.Start(); err == nil {
		err = rerr
	}
	return err
}

// createTraced makes the Server ns/name (the Pattern 1 team ServerConfig)
// and creates the StatefulSet the stock controller would through the
// traced API server; it returns the stored object and a cleanup.
// createTracedAnswered is createTraced, then the check that the webhook
// answered (the stored object holds the team's images); it returns the
// cleanup.
func (s *Suite) createTracedAnswered(ctx context.Context, tr *tracing, ns, name, check string) (func(), error) {
	stored, cleanup, err := s.createTraced(ctx, tr, ns, name)
	if err != nil {
		return cleanup, err
	}
	team := s.teamImages(ns, "mlserver", p1ServerConfig)
	got := k8s.TemplateImages(stored.Spec.Template.Spec)
	s.r.Check(check+"/webhook-answered", k8s.SameImages(got, team), "stored images %s", k8s.FmtImages(got))
	return cleanup, nil
}

func (s *Suite) createTraced(ctx context.Context, tr *tracing, ns, name string) (*appsv1.StatefulSet, func(), error) {
	if err := s.ensurePattern1(ctx); err != nil {
		return nil, nil, err
	}
	if err := s.Apply(ctx, k8s.NewServer(ns, name, p1ServerConfig, 1, nil)); err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		_ = tr.kube.AppsV1().StatefulSets(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = s.deleteServer(context.Background(), ns, name)
	}
	sts, err := s.StandIn.Build(ctx, ns, name)
	if err != nil {
		return nil, cleanup, err
	}
	stored, err := tr.kube.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{FieldManager: "e2e-traces"})
	return stored, cleanup, err
}

// apiserverSpansOf waits until the collector holds a kube-apiserver span
// of the create of ns/name's StatefulSet (any attribute naming its
// collection URL), the proof that the API server's tracing reaches the
// collector.
func apiserverSpansOf(tr *tracing, ns string, timeout time.Duration) ([]controlplane.Span, error) {
	path := "/namespaces/" + ns + "/statefulsets"
	var found []controlplane.Span
	err := util.Poll(timeout, func() error {
		spans, err := tr.col.Spans()
		if err != nil {
			return err
		}
		found = found[:0]
		for _, sp := range spans {
			if sp.Service != "apiserver" {
				continue
			}
			for _, v := range sp.Attrs {
				if strings.Contains(v, path) {
					found = append(found, sp)
					break
				}
			}
		}
		if len(found) == 0 {
			return fmt.Errorf("no kube-apiserver span naming %s among %d spans", path, len(spans))
		}
		return nil
	})
	return found, err
}

// spansOf are the spans of service named name.
func spansOf(spans []controlplane.Span, service, name string) []controlplane.Span {
	var out []controlplane.Span
	for _, sp := range spans {
		if sp.Service == service && sp.Name == name {
			out = append(out, sp)
		}
	}
	return out
}

// webhookOTelEnv is the standard OpenTelemetry environment pointing the
// webhook at the collector, with a short batch delay so a scenario does
// not wait the SDK's default 5 s.
func webhookOTelEnv(col *controlplane.Collector, service string) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.Endpoint(),
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_SERVICE_NAME=" + service,
	}
}

// scenarioTracesOff: the webhook without --otel, although the standard
// OTEL_* environment points at a running collector, exports nothing,
// while the traced API server's spans of the same create do arrive (so
// the receiver works) and the webhook did answer (the object is patched).
func scenarioTracesOff(ctx context.Context, s *Suite) error {
	tr, err := s.tracing()
	if err != nil {
		return err
	}
	ns, name := appNamespaces[1], "mlserver-traces-off"
	const service = "serverconfig-webhook-traces-off"
	return s.withWebhook(ctx, "serverconfig-webhook-traces-off", nil, webhookOTelEnv(tr.col, service), func() error {
		cleanup, err := s.createTracedAnswered(ctx, tr, ns, name, "traces-off")
		if cleanup != nil {
			defer cleanup()
		}
		if err != nil {
			return err
		}
		api, err := apiserverSpansOf(tr, ns, 30*time.Second)
		s.r.Check("traces-off/apiserver-spans-arrive", err == nil, "%d kube-apiserver spans of the create (%v)", len(api), err)
		// the webhook would have exported within its 100 ms batch delay
		time.Sleep(3 * time.Second)
		spans, err := tr.col.Spans()
		if err != nil {
			return err
		}
		var ours int
		for _, sp := range spans {
			if sp.Service == service {
				ours++
			}
		}
		s.r.Check("traces-off/nothing-exported", ours == 0, "%d spans from the webhook without --otel (of %d in the collector)", ours, len(spans))
		return nil
	})
}

// scenarioTracesAdmission: with --otel, a StatefulSet create through the
// traced API server yields the webhook's admission span as a child of the
// API server's span (same trace, parent span id one of the API server's
// spans), with the outcome and patch size as attributes and no object
// contents; the sync loop's reconcile of the workload has a span too.
func scenarioTracesAdmission(ctx context.Context, s *Suite) error {
	tr, err := s.tracing()
	if err != nil {
		return err
	}
	ns, name := appNamespaces[1], "mlserver-traced"
	// the default service name: OTEL_SERVICE_NAME left out
	env := webhookOTelEnv(tr.col, "")[:2]
	return s.withWebhook(ctx, "serverconfig-webhook-traced", []string{"--otel"}, env, func() error {
		cleanup, err := s.createTracedAnswered(ctx, tr, ns, name, "traces-on")
		if cleanup != nil {
			defer cleanup()
		}
		if err != nil {
			return err
		}

		// the webhook exports within 100 ms, kube-apiserver within its
		// batch delay (5 s): wait for both the admission span and its parent
		var adm, parent *controlplane.Span
		err = util.Poll(30*time.Second, func() error {
			spans, err := tr.col.Spans()
			if err != nil {
				return err
			}
			adm, parent = nil, nil
			for _, sp := range spansOf(spans, "serverconfig-webhook", "admission") {
				if sp.Attrs["admission.name"] == name && sp.Attrs["k8s.namespace.name"] == ns && sp.Attrs["admission.operation"] == "Create" {
					sp := sp
					adm = &sp
				}
			}
			if adm == nil {
				return fmt.Errorf("no admission span of %s/%s among %d spans", ns, name, len(spans))
			}
			for _, sp := range spans {
				if sp.SpanID == adm.ParentSpanID && sp.TraceID == adm.TraceID {
					sp := sp
					parent = &sp
				}
			}
			if parent == nil {
				return fmt.Errorf("the admission span's parent %s (trace %s) is not among %d spans", adm.ParentSpanID, adm.TraceID, len(spans))
			}
			return nil
		})
		if !s.r.Check("traces-on/admission-span-exported", adm != nil, "%v", err) {
			return nil
		}
		s.r.Check("traces-on/child-of-apiserver-span", parent != nil && parent.Service == "apiserver" && adm.Kind == 2,
			"admission span %s (kind %d) in trace %s, parent %s: %s", adm.SpanID, adm.Kind, adm.TraceID, adm.ParentSpanID, describe(parent))
		s.r.Check("traces-on/outcome-attributes", adm.Attrs["admission.outcome"] == "patched" && adm.Attrs["admission.decision"] == "patched" &&
			adm.Attrs["admission.scope"] == "in" && adm.Attrs["admission.lookup"] == "found" &&
			adm.Attrs["admission.serverconfig"] == p1ServerConfig && adm.Attrs["admission.patch_ops"] != "" && adm.Attrs["admission.patch_ops"] != "0",
			"attributes %v", adm.Attrs)
		var leaked []string
		for k, v := range adm.Attrs {
			for _, img := range s.teamImages(ns, "mlserver", p1ServerConfig) {
				if strings.Contains(v, img) || strings.Contains(v, "harbor.test") {
					leaked = append(leaked, k)
				}
			}
		}
		s.r.Check("traces-on/no-object-contents", len(leaked) == 0, "attributes naming an image: %v", leaked)

		// the sync loop (serve --sync, as shipped) reconciles the new workload
		var rec *controlplane.Span
		err = util.Poll(60*time.Second, func() error {
			all, err := tr.col.Spans()
			if err != nil {
				return err
			}
			for _, sp := range spansOf(all, "serverconfig-webhook", "sync.reconcile") {
				if sp.Attrs["sync.workload"] == name && sp.Attrs["k8s.namespace.name"] == ns && sp.Attrs["sync.result"] == "ok" {
					sp := sp
					rec = &sp
					return nil
				}
			}
			return fmt.Errorf("no sync.reconcile span of %s/%s", ns, name)
		})
		s.r.Check("traces-on/sync-reconcile-span", rec != nil, "%s %v", describe(rec), err)
		return nil
	})
}

func describe(sp *controlplane.Span) string {
	if sp == nil {
		return "not among the exported spans"
	}
	return fmt.Sprintf("%s span %q (%s) attrs %v", sp.Service, sp.Name, sp.SpanID, sp.Attrs)
}
