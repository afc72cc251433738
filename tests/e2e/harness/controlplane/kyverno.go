package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// Kyverno's admission controller (cmd/kyverno of github.com/kyverno/kyverno,
// built by `cargo xtask bench-e2e` from tests/e2e/peers/kyverno-v*) run as a
// local process against this control plane, for the Kyverno comparison of
// `e2e bench` only. Out of cluster, as its own flags allow:
//
//   - --kubeconfig: a client certificate of its own (user KyvernoUser, group
//     system:masters), so the audit log tells its requests apart;
//   - --serverIP=127.0.0.1:PORT with --webhookServerHost/--webhookServerPort:
//     it issues its own CA and serving certificate with that IP in the SANs
//     (stored as Secrets in its namespace, --caSecretName/--tlsSecretName)
//     and registers its webhooks by URL https://127.0.0.1:PORT/... instead
//     of by Service;
//   - KYVERNO_NAMESPACE and the other variables the Deployment sets; the
//     namespace, its `kyverno` ConfigMap (the chart's webhook namespace
//     selector) and Kyverno's CRDs (config/crds of the module) exist first;
//   - --admissionReports=false (no reports controller runs to consume them),
//     metrics on a free loopback port, the controller-runtime metrics server
//     off: nothing listens outside loopback or on a fixed port.
//
// Leader election stays on (one replica: it wins the Lease at once); the
// background, reports and cleanup controllers are separate binaries and do
// not run.

// KyvernoUser is the identity of Kyverno's client certificate.
const KyvernoUser = "kyverno-e2e"

// KyvernoNamespace holds its Secrets, ConfigMaps and Lease.
const KyvernoNamespace = "kyverno"

// Kyverno is the running admission controller.
type Kyverno struct {
	Proc        *util.Proc
	Port        int // webhook server (HTTPS)
	MetricsPort int
}

// InstallKyvernoCRDs applies every CRD under dir (the module's config/crds,
// in its subfolders) and waits until they are established.
func (cp *ControlPlane) InstallKyvernoCRDs(ctx context.Context, dir string) error {
	var files []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("kyverno CRDs %s: %w", dir, err)
	}
	sort.Strings(files)
	var crds []*unstructured.Unstructured
	for _, f := range files {
		objs, err := k8s.DecodeYAMLFile(f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, o)
			}
		}
	}
	if len(crds) == 0 {
		return fmt.Errorf("%s: no CustomResourceDefinition", dir)
	}
	util.Step("kyverno: installing %d CRDs from %s", len(crds), dir)
	if err := cp.ApplyCRDs(ctx, crds); err != nil {
		return err
	}
	return nil
}

// StartKyverno starts bin (CRDs installed before) and waits until its
// webhook server answers and its policy validation webhook is registered.
func (cp *ControlPlane) StartKyverno(ctx context.Context, bin string) (*Kyverno, error) {
	if err := cp.EnsureNamespace(ctx, KyvernoNamespace); err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kyverno", Namespace: KyvernoNamespace},
		// the chart's default: every namespace but kube-system (Kyverno adds
		// its own namespace to the exclusions)
		Data: map[string]string{
			"webhooks": `{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]}}`,
		},
	}
	for _, c := range []*corev1.ConfigMap{cm, {ObjectMeta: metav1.ObjectMeta{Name: "kyverno-metrics", Namespace: KyvernoNamespace}}} {
		if _, err := cp.Kube.CoreV1().ConfigMaps(KyvernoNamespace).Create(ctx, c, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	cert, err := cp.CA.Issue(filepath.Join(cp.Dir, "pki"), "kyverno-client", KyvernoUser, []string{"system:masters"}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(cp.Dir, "kyverno.kubeconfig")
	if err := writeKubeconfig(kubeconfig, cp.APIURL, cp.CA.Path, cert, KyvernoUser); err != nil {
		return nil, err
	}
	k := &Kyverno{Port: util.MustFreePort(), MetricsPort: util.MustFreePort()}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--serverIP=127.0.0.1:%d", k.Port),
		"--webhookServerHost=127.0.0.1",
		fmt.Sprintf("--webhookServerPort=%d", k.Port),
		"--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
		"--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
		"--admissionReports=false",
		"--metricsHost=127.0.0.1",
		fmt.Sprintf("--metricsPort=%d", k.MetricsPort),
		"--controllerRuntimeMetricsAddress=0",
		"--disableLogColor",
	}
	env := []string{
		"KYVERNO_NAMESPACE=" + KyvernoNamespace,
		"KYVERNO_SERVICEACCOUNT_NAME=kyverno-admission-controller",
		"KYVERNO_DEPLOYMENT=kyverno-admission-controller",
		"KYVERNO_POD_NAME=kyverno-admission-controller-e2e",
		"KYVERNO_SVC=kyverno-svc",
		"INIT_CONFIG=kyverno",
		"METRICS_CONFIG=kyverno-metrics",
		"KUBECONFIG=" + kubeconfig,
	}
	util.Step("kyverno: starting %s on 127.0.0.1:%d: %s", bin, k.Port, strings.Join(args, " "))
	k.Proc, err = util.StartProc("kyverno", filepath.Join(cp.Dir, "logs"), bin, args, env)
	if err != nil {
		return nil, err
	}
	// its serving certificate is its own CA's: only liveness is checked here
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitFor(180*time.Second, k.Proc, "kyverno /health/liveness", func() error {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/health/liveness", k.Port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("liveness: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// the policy validation webhook (it must be there before a ClusterPolicy
	// is created, or the policy would not be checked/registered the same way)
	if err := waitFor(180*time.Second, k.Proc, "kyverno's policy validating webhook", func() error {
		_, err := cp.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "kyverno-policy-validating-webhook-cfg", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	return k, nil
}
