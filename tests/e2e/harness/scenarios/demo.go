package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// RunDemo: the seed's Pattern 1 on a local control plane, first without the
// webhook, then with it; prints a before/after table and keeps everything
// running (with the stand-in controller reconciling every Server) until
// Ctrl-C.
func RunDemo(cfg controlplane.Config) int {
	util.HandleSignals()
	defer util.Teardown()
	s, err := Setup(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: setup failed: %v\n", err)
		return 1
	}
	ctx := context.Background()
	form := k8s.FormEmpty
	if err := s.applyPattern1(ctx, form); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	without := map[string]map[string]string{}
	for _, ns := range appNamespaces {
		_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
		without[ns] = map[string]string{}
		if err != nil {
			without[ns]["*"] = "create rejected: " + shortErr(err)
			continue
		}
		without[ns] = k8s.TemplateImages(stored.Spec.Template.Spec)
		if err := s.CP.DeleteSTS(ctx, ns, p1Server); err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
	}
	with := map[string]map[string]string{}
	whErr := s.needWebhook(ctx)
	for _, ns := range appNamespaces {
		with[ns] = map[string]string{}
		if whErr != nil {
			with[ns]["*"] = "webhook unavailable: " + shortErr(whErr)
			continue
		}
		_, stored, err := s.StandIn.Reconcile(ctx, ns, p1Server)
		if err != nil {
			with[ns]["*"] = "error: " + shortErr(err)
			continue
		}
		with[ns] = k8s.TemplateImages(stored.Spec.Template.Spec)
	}

	fmt.Printf("\nSeed Pattern 1: Server %q with its own ServerConfig %q in each application namespace;\n", p1Server, p1ServerConfig)
	fmt.Printf("the controller namespace %s has a same-named ServerConfig whose containers have no images.\n\n", k8s.ControllerNS)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATEFULSET\tCONTAINER\tEXPECTED (namespace's ServerConfig)\tWITHOUT WEBHOOK\tWITH WEBHOOK")
	for _, ns := range appNamespaces {
		exp := s.teamImages(ns, "mlserver", p1ServerConfig)
		names := make([]string, 0, len(exp))
		for n := range exp {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, c := range names {
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\n", ns, p1Server, c, exp[c], cell(without[ns], c), cell(with[ns], c))
		}
	}
	tw.Flush()
	fmt.Printf("\nkube-apiserver %s; logs in %s/logs\n", s.CP.GitVersion, s.CP.Dir)
	fmt.Println("The Server's StatefulSet is written by the harness's STAND-IN for the stock Seldon controller (see tests/e2e/README.md).")
	fmt.Println("It keeps reconciling every Server while this runs. Explore with:")
	fmt.Printf("\nexport KUBECONFIG=%s\n\n", s.CP.AdminKubeconfig)
	fmt.Println("Press Ctrl-C to stop and remove everything.")

	// the stand-in controller keeps running: re-send a Server's StatefulSet
	// whenever the desired object changes (the stock controller's rule)
	last := map[string]string{}
	for {
		time.Sleep(3 * time.Second)
		l, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace("").List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, u := range l.Items {
			key := u.GetNamespace() + "/" + u.GetName()
			desired, err := s.StandIn.Build(ctx, u.GetNamespace(), u.GetName())
			if err != nil {
				continue
			}
			b, _ := json.Marshal(desired)
			if _, err := s.CP.GetSTS(ctx, u.GetNamespace(), u.GetName()); err == nil && last[key] == string(b) {
				continue
			}
			if _, err := s.StandIn.Write(ctx, desired); err != nil {
				util.Step("stand-in controller: %s: %v", key, shortErr(err))
				continue
			}
			last[key] = string(b)
		}
	}
}

func cell(m map[string]string, c string) string {
	if v, ok := m["*"]; ok {
		return v
	}
	v, ok := m[c]
	if !ok {
		return "-"
	}
	if v == "" {
		return "<empty>"
	}
	return v
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 90 {
		s = s[:90] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}
