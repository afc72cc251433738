// Command controller runs cert-manager's certificate controllers (the
// `github.com/cert-manager/cert-manager` v1.18.2 packages, unmodified) as a
// local process for the e2e harness.
//
// The upstream binary's wiring lives in the separate module
// github.com/cert-manager/cert-manager/cmd/controller, which the Go module
// proxy does not serve; the controllers themselves, their registration and
// the controller context are in the root module and are used as they are.
// This main only does what the upstream command does for the controllers
// linked in below: build the ContextFactory from a kubeconfig, construct
// every registered controller, start the informer factories and run them.
// Linked in: issuers, clusterissuers, the CA and self-signed
// CertificateRequest issuers, the approver and the Certificate controllers
// (trigger, key-manager, request-manager, issuing, readiness,
// revision-manager). Not linked: ACME, Vault, Venafi, the ingress/gateway
// shims, the CertificateSigningRequest signers, the webhook.
// No leader election (one replica).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/metrics"
	"github.com/cert-manager/cert-manager/pkg/util"

	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	clusterNS := flag.String("cluster-resource-namespace", "cert-manager", "namespace of the Secrets of ClusterIssuers")
	namespace := flag.String("namespace", "", "only this namespace (default: all)")
	version := flag.Bool("version", false, "print the version and exit")
	klog.InitFlags(flag.CommandLine)
	flag.Parse()
	if *version {
		fmt.Println(util.AppVersion)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	log := logf.FromContext(ctx)

	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		Namespace:          *namespace,
		Clock:              clock.RealClock{},
		Metrics:            metrics.New(log, clock.RealClock{}),
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: *clusterNS,
		},
		CertificateOptions: controllerpkg.CertificateOptions{},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller context:", err)
		os.Exit(1)
	}

	known := controllerpkg.Known()
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	var wg sync.WaitGroup
	for _, n := range names {
		c, err := known[n](factory)
		if err != nil {
			fmt.Fprintf(os.Stderr, "construct controller %s: %v\n", n, err)
			os.Exit(1)
		}
		log.Info("starting controller", "controller", n)
		wg.Add(1)
		go func(n string, c controllerpkg.Interface) {
			defer wg.Done()
			if err := c.Run(5, ctx); err != nil {
				fmt.Fprintf(os.Stderr, "controller %s: %v\n", n, err)
				os.Exit(1)
			}
		}(n, c)
	}
	// the informer factories are shared by every Context the factory builds
	shared, err := factory.Build("informers")
	if err != nil {
		fmt.Fprintln(os.Stderr, "build context:", err)
		os.Exit(1)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	if shared.GatewaySolverEnabled {
		shared.GWShared.Start(ctx.Done())
	}
	wg.Wait()
}
