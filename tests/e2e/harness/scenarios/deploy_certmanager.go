package scenarios

// Real cert-manager for the deploy scenarios: its CRDs (read from the
// cert-manager Go module the peer build downloaded; not committed), its
// controller and cainjector (tests/e2e/peers/cert-manager-v*/, built by
// xtask) as local processes against the control plane, and the harness
// playing the kubelet for the webhook's TLS Secret volume.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

var (
	gvrSecrets     = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	gvrCertificate = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
)

const certManagerNS = "cert-manager" // --cluster-resource-namespace

// installCertManagerCRDs applies deploy/crds/crd-*.yaml of the cert-manager
// module. Those files are Helm templates whose template parts sit in YAML
// comments, except the label values: labels are replaced by fixed ones.
// They carry no conversion webhook, so cert-manager's webhook is not needed.
func (s *Suite) installCertManagerCRDs(ctx context.Context) error {
	dir := s.Cfg.CertManagerCRDs
	if dir == "" {
		return fmt.Errorf("no --cert-manager-crds folder given (cargo xtask e2e passes the cert-manager module's deploy/crds)")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "crd-*.yaml"))
	if len(files) == 0 {
		return fmt.Errorf("%s: no crd-*.yaml", dir)
	}
	sort.Strings(files)
	var crds []*unstructured.Unstructured
	for _, f := range files {
		objs, err := k8s.DecodeYAMLFile(f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range objs {
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			o.SetLabels(map[string]string{"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/instance": "e2e"})
			o.SetAnnotations(nil)
			crds = append(crds, o)
		}
	}
	if err := s.CP.ApplyCRDs(ctx, crds); err != nil {
		return err
	}
	return util.Poll(30*time.Second, func() error {
		_, err := s.CP.Dyn.Resource(gvrCertificate).Namespace("default").List(ctx, metav1.ListOptions{})
		return err
	})
}

func hasCondition(o *unstructured.Unstructured, typ, status string) bool {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		if cm["type"] == typ && cm["status"] == status {
			return true
		}
	}
	return false
}

// certManager is the state the deploy scenarios share.
type certManager struct {
	controller, cainjector *util.Proc
	kubeletDir             string // the Secret volume, kubelet layout
	caPEM                  []byte // ca.crt of the serving Secret
	savedCert              controlplane.CertFiles
	savedCA                *controlplane.CA
	active                 bool // the webhook serves cert-manager's certificate
}

var cm = &certManager{}

func (s *Suite) startCertManager() error {
	dir := s.Cfg.CertManagerDir
	if dir == "" {
		return fmt.Errorf("no --cert-manager-dir given (cargo xtask e2e builds cert-manager from tests/e2e/peers/cert-manager-v*)")
	}
	logs := filepath.Join(s.CP.Dir, "logs")
	var err error
	if cm.controller == nil {
		util.Step("cert-manager: starting the controller (%s)", dir)
		cm.controller, err = util.StartProc("cert-manager-controller", logs, filepath.Join(dir, "cert-manager-controller"), []string{
			"--kubeconfig=" + s.CP.AdminKubeconfig,
			"--cluster-resource-namespace=" + certManagerNS,
			"--v=2",
		}, nil)
		if err != nil {
			return err
		}
	}
	if cm.cainjector == nil {
		util.Step("cert-manager: starting the cainjector")
		cm.cainjector, err = util.StartProc("cert-manager-cainjector", logs, filepath.Join(dir, "cert-manager-cainjector"), []string{
			"--kubeconfig=" + s.CP.AdminKubeconfig,
			"--v=2",
		}, nil)
		if err != nil {
			return err
		}
	}
	time.Sleep(time.Second)
	for _, p := range []*util.Proc{cm.controller, cm.cainjector} {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, err, p.Tail(2000))
		}
	}
	return nil
}

// stopCertManager stops both processes (cainjector would otherwise keep
// re-injecting cert-manager's CA into the harness's registration, which
// carries the same inject-ca-from annotation).
func (s *Suite) stopCertManager() {
	if cm.cainjector != nil {
		cm.cainjector.Stop(10 * time.Second)
		cm.cainjector = nil
	}
	if cm.controller != nil {
		cm.controller.Stop(10 * time.Second)
		cm.controller = nil
	}
}

// chartCertManagerObjects are the Issuers and Certificates of helm template
// (default values). The only change: the serving Certificate also lists
// the IP 127.0.0.1, since the API server reaches the local webhook by URL
// on loopback (there is no Service routing here); its DNS names are kept.
func (s *Suite) chartCertManagerObjects() ([]*unstructured.Unstructured, error) {
	objs, err := controlplane.HelmTemplate(s.Cfg)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Issuer":
			out = append(out, o)
		case "Certificate":
			if o.GetName() == controlplane.ServingCert {
				_ = unstructured.SetNestedStringSlice(o.Object, []string{"127.0.0.1"}, "spec", "ipAddresses")
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// waitCertificateReady waits for the Certificate's Ready=True condition.
func (s *Suite) waitCertificateReady(ctx context.Context, name string, timeout time.Duration) (*unstructured.Unstructured, error) {
	var last *unstructured.Unstructured
	err := util.Poll(timeout, func() error {
		c, err := s.CP.Dyn.Resource(gvrCertificate).Namespace(controlplane.ReleaseNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = c
		if !hasCondition(c, "Ready", "True") {
			conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
			return fmt.Errorf("Certificate %s not Ready: %v", name, conds)
		}
		return nil
	})
	return last, err
}

// servingSecret reads the serving Secret's tls.crt, tls.key and ca.crt.
func (s *Suite) servingSecret(ctx context.Context) (*corev1.Secret, error) {
	sec, err := s.CP.Kube.CoreV1().Secrets(controlplane.ReleaseNS).Get(ctx, controlplane.ServingSecret, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if len(sec.Data[k]) == 0 {
			return nil, fmt.Errorf("Secret %s/%s has no %s", controlplane.ReleaseNS, controlplane.ServingSecret, k)
		}
	}
	return sec, nil
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	return x509.ParseCertificate(b.Bytes)
}

// KubeletVolume writes a Secret's keys into dir the way the kubelet's
// atomic writer does: dir/..<timestamp>/<key> holds the data, dir/..data is
// a symlink to it, dir/<key> -> ..data/<key>; an update writes a new
// timestamped folder, points ..data_tmp at it, renames ..data_tmp over
// ..data (the atomic switch) and removes the old folder.
func KubeletVolume(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts := filepath.Join(dir, fmt.Sprintf("..%s.%09d", time.Now().Format("2006_01_02_15_04_05"), time.Now().Nanosecond()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		return err
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(ts, k), v, 0o600); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for k := range data {
		link := filepath.Join(dir, k)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
			return err
		}
	}
	if old != "" && old != filepath.Base(ts) {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// servedLeaf connects to the webhook and returns the leaf it serves,
// verified against caPEM for serverName.
func servedLeaf(port int, caPEM []byte, serverName string) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no CA certificate")
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pool, ServerName: serverName})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, fmt.Errorf("no peer certificate")
	}
	return st.PeerCertificates[0], nil
}

// registrationCABundles are the caBundles of the registered configuration.
func (s *Suite) registrationCABundles(ctx context.Context) ([][]byte, error) {
	o, err := s.CP.Dyn.Resource(k8s.GVRMWC).Get(ctx, s.MWC.GetName(), metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
	var out [][]byte
	for _, h := range hooks {
		b64, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "caBundle")
		b, _ := base64.StdEncoding.DecodeString(b64)
		out = append(out, b)
	}
	return out, nil
}

// useCertManagerTLS brings cert-manager up, issues the chart's
// certificates, registers the shipped registration WITHOUT a caBundle (the
// cainjector must fill it), writes the Secret into a kubelet-style volume
// and restarts the webhook on it. Checks are reported under sc.
func (s *Suite) useCertManagerTLS(ctx context.Context, sc string) error {
	if cm.active {
		return nil
	}
	if err := s.installCertManagerCRDs(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, certManagerNS); err != nil {
		return err
	}
	if err := s.startCertManager(); err != nil {
		return err
	}
	objs, err := s.chartCertManagerObjects()
	if err != nil {
		return err
	}
	if err := s.Apply(ctx, objs...); err != nil {
		return err
	}
	t0 := time.Now()
	for _, name := range []string{controlplane.CACertName, controlplane.ServingCert} {
		_, err := s.waitCertificateReady(ctx, name, 120*time.Second)
		if !s.r.Check(checkName(sc, "certificate-ready", name), err == nil, "Ready after %.1fs %v", time.Since(t0).Seconds(), err) {
			return fmt.Errorf("cert-manager did not issue %s; controller log tail:\n%s", name, cm.controller.Tail(3000))
		}
	}
	sec, err := s.servingSecret(ctx)
	if !s.r.Check(checkName(sc, "secret"), err == nil, "Secret %s/%s with tls.crt, tls.key, ca.crt %v", controlplane.ReleaseNS, controlplane.ServingSecret, err) {
		return err
	}
	leaf, err := parseLeaf(sec.Data["tls.crt"])
	if err != nil {
		return err
	}
	ca, err := parseLeaf(sec.Data["ca.crt"])
	if err != nil {
		return err
	}
	wantDNS := []string{"serverconfig-webhook", "serverconfig-webhook.serverconfig-webhook-system", "serverconfig-webhook.serverconfig-webhook-system.svc", "serverconfig-webhook.serverconfig-webhook-system.svc.cluster.local"}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, verr := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "serverconfig-webhook.serverconfig-webhook-system.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	s.r.Check(checkName(sc, "leaf-as-specified"),
		verr == nil && strings.Join(leaf.DNSNames, ",") == strings.Join(wantDNS, ",") && leaf.PublicKeyAlgorithm == x509.ECDSA &&
			life > 2150*time.Hour && life < 2170*time.Hour && ca.IsCA && ca.Subject.CommonName == controlplane.CACertName,
		"leaf %s, DNS %v, IPs %v, key %v, lifetime %v, issuer %q (CA %q, isCA %v), verifies for the Service name: %v",
		leaf.SerialNumber.Text(16), leaf.DNSNames, leaf.IPAddresses, leaf.PublicKeyAlgorithm, life, leaf.Issuer.CommonName, ca.Subject.CommonName, ca.IsCA, verr)

	// the registration as shipped, caBundle left to the cainjector
	reg := s.MWC.DeepCopy()
	hooks, _, _ := unstructured.NestedSlice(reg.Object, "webhooks")
	for i, h := range hooks {
		hm := h.(map[string]any)
		cc := hm["clientConfig"].(map[string]any)
		delete(cc, "caBundle")
		hooks[i] = hm
	}
	_ = unstructured.SetNestedSlice(reg.Object, hooks, "webhooks")
	ann := reg.GetAnnotations()[controlplane.InjectCAAnnKey]
	if !s.r.Check(checkName(sc, "inject-ca-from"), ann == controlplane.ReleaseNS+"/"+controlplane.ServingCert, "annotation %s=%q on the rendered registration", controlplane.InjectCAAnnKey, ann) {
		return nil
	}
	t1 := time.Now()
	if err := s.CP.Register(ctx, reg); err != nil {
		return err
	}
	var bundles [][]byte
	err = util.Poll(60*time.Second, func() error {
		var err error
		bundles, err = s.registrationCABundles(ctx)
		if err != nil {
			return err
		}
		for _, b := range bundles {
			if !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(sec.Data["ca.crt"])) {
				return fmt.Errorf("caBundle not injected yet")
			}
		}
		return nil
	})
	if !s.r.Check(checkName(sc, "cainjector-ca-bundle"), err == nil && len(bundles) > 0,
		"every webhook's caBundle == ca.crt of %s (the CA %q) %.1fs after registering without one (incl. the harness's 2 s settle) %v", controlplane.ServingSecret, ca.Subject.CommonName, time.Since(t1).Seconds(), err) {
		return fmt.Errorf("no CA injected; cainjector log tail:\n%s", cm.cainjector.Tail(3000))
	}

	// the kubelet: the Secret as a volume; the webhook restarted on it
	cm.kubeletDir = filepath.Join(s.CP.Dir, "kubelet", "pods", "serverconfig-webhook", "volumes", "tls")
	if err := KubeletVolume(cm.kubeletDir, sec.Data); err != nil {
		return err
	}
	cm.caPEM = sec.Data["ca.crt"]
	cm.savedCert, cm.savedCA = s.WH.Cert, s.WH.CA
	s.WH.Stop()
	s.WH.Cert = controlplane.CertFiles{Cert: filepath.Join(cm.kubeletDir, "tls.crt"), Key: filepath.Join(cm.kubeletDir, "tls.key")}
	s.WH.CA = &controlplane.CA{CertPEM: cm.caPEM, Cert: ca}
	cm.active = true
	if err := s.WH.Start(); err != nil {
		return err
	}
	served, err := servedLeaf(s.WH.Port, cm.caPEM, "serverconfig-webhook.serverconfig-webhook-system.svc")
	s.r.Check(checkName(sc, "webhook-serves-issued-leaf"), err == nil && served.SerialNumber.Cmp(leaf.SerialNumber) == 0,
		"webhook on 127.0.0.1:%d serves leaf %s from %s/tls.crt (..data -> %s) %v", s.WH.Port, leaf.SerialNumber.Text(16), cm.kubeletDir, readlink(filepath.Join(cm.kubeletDir, "..data")), err)
	return nil
}

func readlink(p string) string { l, _ := os.Readlink(p); return l }

// restoreHarnessTLS puts the harness's own certificate and registration
// back and stops cert-manager (for the scenarios that may follow).
func (s *Suite) restoreHarnessTLS(ctx context.Context) {
	s.stopCertManager()
	if cm.active {
		s.WH.Stop()
		s.WH.Cert, s.WH.CA = cm.savedCert, cm.savedCA
		cm.active = false
	}
	// the registration may have been swapped even when the set-up failed
	if err := s.needWebhook(ctx); err != nil {
		s.r.Fail("deploy-restore-harness-tls", err)
	}
}

// secretChanged waits for the serving Secret's tls.crt to differ from old.
func (s *Suite) secretChanged(ctx context.Context, old []byte, timeout time.Duration) (*corev1.Secret, error) {
	var out *corev1.Secret
	err := util.PollEvery(timeout, 50*time.Millisecond, func() error {
		sec, err := s.CP.Kube.CoreV1().Secrets(controlplane.ReleaseNS).Get(ctx, controlplane.ServingSecret, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if bytes.Equal(sec.Data["tls.crt"], old) || len(sec.Data["tls.key"]) == 0 {
			return fmt.Errorf("tls.crt unchanged")
		}
		out = sec
		return nil
	})
	return out, err
}
