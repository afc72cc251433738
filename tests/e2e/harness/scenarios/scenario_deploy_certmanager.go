package scenarios

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

const certNS = "deploy-certs" // an application namespace for these scenarios

// applyCertNSFixtures: a team ServerConfig and Server in certNS, the
// released ServerConfig of that name in the controller namespace.
func (s *Suite) applyCertNSFixtures(ctx context.Context) error {
	if err := s.CP.EnsureNamespace(ctx, certNS); err != nil {
		return err
	}
	return s.Apply(ctx,
		s.Fx.ControllerNSConfig("mlserver", "mlserver", k8s.FormPlatform),
		s.Fx.ServerConfig("mlserver", "mlserver", certNS, "team"),
		k8s.NewServer(certNS, "mlserver", "mlserver", 1, nil))
}

// scenarioDeployCertManager: real cert-manager issues the chart's
// certificate chain, cainjector fills the shipped registration's caBundle,
// the webhook serves the issued Secret from a kubelet-style volume, and the
// API server calls it with the injected CA: a Server's StatefulSet written
// by the stand-in controller is patched.
func scenarioDeployCertManager(ctx context.Context, s *Suite) error {
	const sc = "deploy-cert-manager"
	defer s.restoreHarnessTLS(context.Background())
	if err := s.useCertManagerTLS(ctx, sc); err != nil {
		return err
	}
	if err := s.applyCertNSFixtures(ctx); err != nil {
		return err
	}
	_ = s.CP.DeleteSTS(ctx, certNS, "mlserver")
	_, stored, err := s.StandIn.Reconcile(ctx, certNS, "mlserver")
	if !s.r.Check(checkName(sc, "admission-through-injected-ca"), err == nil, "create of %s/mlserver: %v", certNS, err) {
		return nil
	}
	want := s.teamImages(certNS, "mlserver", "mlserver")
	imgs := k8s.TemplateImages(stored.Spec.Template.Spec)
	s.r.Check(checkName(sc, "statefulset-patched"), k8s.SameImages(imgs, want) && len(k8s.WebhookAnnotations(stored.ObjectMeta)) > 0,
		"stored %s (want the team's %s), annotations %v", k8s.FmtImages(imgs), k8s.FmtImages(want), k8s.WebhookAnnotations(stored.ObjectMeta))
	return nil
}

// scenarioDeployRenewal: a forced renewal (what `cmctl renew` does: the
// Issuing condition on the Certificate's status) while admissions keep
// flowing through the API server; the harness updates the kubelet-style
// volume when the Secret changes. Zero failed admissions; the new leaf is
// served within seconds.
func scenarioDeployRenewal(ctx context.Context, s *Suite) error {
	const sc = "deploy-cert-renewal"
	defer s.restoreHarnessTLS(context.Background())
	if err := s.useCertManagerTLS(ctx, sc); err != nil {
		return err
	}
	if err := s.applyCertNSFixtures(ctx); err != nil {
		return err
	}
	if _, _, err := s.StandIn.Reconcile(ctx, certNS, "mlserver"); err != nil {
		return fmt.Errorf("initial write: %w", err)
	}
	oldSec, err := s.servingSecret(ctx)
	if err != nil {
		return err
	}
	oldLeaf, _ := parseLeaf(oldSec.Data["tls.crt"])
	desired, err := s.StandIn.Build(ctx, certNS, "mlserver")
	if err != nil {
		return err
	}
	want := s.teamImages(certNS, "mlserver", "mlserver")

	// admissions: 2 workers of dry-run creates of owned StatefulSets, one of
	// them also sending the stand-in's full Update of the stored one
	load, stopLoad := s.startAdmissionLoad(ctx, desired, want)
	time.Sleep(2 * time.Second)

	// cmctl renew: the Issuing condition, True, on the Certificate's status
	tTrigger := time.Now()
	err = triggerRenewal(ctx, s)
	if !s.r.Check(checkName(sc, "renew-triggered"), err == nil, "Issuing=True (ManuallyTriggered) set on %s/%s %v", controlplane.ReleaseNS, controlplane.ServingCert, err) {
		stopLoad()
		return nil
	}
	newSec, err := s.secretChanged(ctx, oldSec.Data["tls.crt"], 90*time.Second)
	tSecret := time.Now()
	if !s.r.Check(checkName(sc, "secret-renewed"), err == nil, "new tls.crt %.2fs after the trigger %v", tSecret.Sub(tTrigger).Seconds(), err) {
		stopLoad()
		return nil
	}
	atSecret := load.snapshot()
	// the kubelet's atomic update of the volume
	err = KubeletVolume(cm.kubeletDir, newSec.Data)
	tWritten := time.Now()
	if err != nil {
		stopLoad()
		return err
	}
	newLeaf, _ := parseLeaf(newSec.Data["tls.crt"])
	var served *struct{}
	perr := util.PollEvery(30*time.Second, 50*time.Millisecond, func() error {
		l, err := servedLeaf(s.WH.Port, cm.caPEM, "serverconfig-webhook.serverconfig-webhook-system.svc")
		if err != nil {
			return err
		}
		if l.SerialNumber.Cmp(newLeaf.SerialNumber) != 0 {
			return fmt.Errorf("still serving %s", l.SerialNumber.Text(16))
		}
		served = &struct{}{}
		return nil
	})
	tServed := time.Now()
	time.Sleep(3 * time.Second) // admissions keep flowing on the new leaf
	stopLoad()
	final := load.snapshot()

	s.r.Check(checkName(sc, "new-leaf"), newLeaf != nil && oldLeaf != nil && newLeaf.SerialNumber.Cmp(oldLeaf.SerialNumber) != 0 &&
		!bytes.Equal(newSec.Data["tls.key"], oldSec.Data["tls.key"]) && newLeaf.Issuer.CommonName == controlplane.CACertName,
		"serial %s -> %s, new private key (rotationPolicy: Always), issuer %q", SerialHex(oldLeaf), SerialHex(newLeaf), issuerCN(newLeaf))
	secs := tServed.Sub(tSecret).Seconds()
	s.r.Check(checkName(sc, "new-leaf-served"), perr == nil && served != nil && secs <= 10,
		"served %.2fs after the Secret changed (volume updated %.3fs after it; webhook reload interval 1s) %v", secs, tWritten.Sub(tSecret).Seconds(), perr)
	during := final.attempted - atSecret.attempted
	s.r.Check(checkName(sc, "zero-failed-admissions"), final.failed == 0 && final.attempted > 0 && during > 0,
		"%d admissions attempted (%d dry-run creates, %d updates), %d failed, %d of them between the Secret change and 3 s after the new leaf was served%s",
		final.attempted, final.byKind["dry-run create"], final.byKind["update"], final.failed, during, load.errorsText())
	bundles, err := s.registrationCABundles(ctx)
	caSame := err == nil && len(bundles) > 0
	for _, b := range bundles {
		caSame = caSame && bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(cm.caPEM))
	}
	s.r.Check(checkName(sc, "ca-bundle-kept"), caSame && bytes.Equal(newSec.Data["ca.crt"], cm.caPEM), "the CA did not change, nor the injected caBundle %v", err)
	crt, err := s.waitCertificateReady(ctx, controlplane.ServingCert, 60*time.Second)
	rev, _, _ := unstructured.NestedInt64(crtObj(crt), "status", "revision")
	s.r.Check(checkName(sc, "certificate-ready-again"), err == nil && rev >= 2, "Ready, status.revision %d %v", rev, err)
	util.Step("deploy-cert-renewal figures: %d admissions, %d failed; trigger -> Secret %.2fs; Secret -> served %.2fs",
		final.attempted, final.failed, tSecret.Sub(tTrigger).Seconds(), secs)
	return nil
}

func crtObj(u *unstructured.Unstructured) map[string]any {
	if u == nil {
		return map[string]any{}
	}
	return u.Object
}

// triggerRenewal does what `cmctl renew` does: set the Issuing condition
// (True, ManuallyTriggered) on the Certificate's status.
func triggerRenewal(ctx context.Context, s *Suite) error {
	return triggerRenewalOf(ctx, s, controlplane.ServingCert)
}

func triggerRenewalOf(ctx context.Context, s *Suite, name string) error {
	api := s.CP.Dyn.Resource(gvrCertificate).Namespace(controlplane.ReleaseNS)
	c, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
	var kept []any
	for _, x := range conds {
		if m, _ := x.(map[string]any); m["type"] != "Issuing" {
			kept = append(kept, x)
		}
	}
	kept = append(kept, map[string]any{
		"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
		"message":            "Certificate re-issuance manually triggered",
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		"observedGeneration": c.GetGeneration(),
	})
	if err := unstructured.SetNestedSlice(c.Object, kept, "status", "conditions"); err != nil {
		return err
	}
	_, err = api.UpdateStatus(ctx, c, metav1.UpdateOptions{})
	return err
}

type admissionLoad struct {
	mu        sync.Mutex
	attempted int
	failed    int
	byKind    map[string]int
	errors    []string
}

type loadSnapshot struct {
	attempted, failed int
	byKind            map[string]int
}

func newAdmissionLoad() *admissionLoad { return &admissionLoad{byKind: map[string]int{}} }

func (l *admissionLoad) record(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempted++
	l.byKind[kind]++
	if err != nil {
		l.failed++
		if len(l.errors) < 3 {
			l.errors = append(l.errors, fmt.Sprintf("%s at %s: %v", kind, time.Now().Format("15:04:05.000"), err))
		}
	}
}

func (l *admissionLoad) snapshot() loadSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	bk := map[string]int{}
	for k, v := range l.byKind {
		bk[k] = v
	}
	return loadSnapshot{attempted: l.attempted, failed: l.failed, byKind: bk}
}

func (l *admissionLoad) errorsText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) == 0 {
		return ""
	}
	return "; first errors: " + strings.Join(l.errors, "; ")
}

// SerialHex is a certificate's serial number in hex ("?" for none), to tell leaves apart.
func SerialHex(c *x509.Certificate) string {
	if c == nil {
		return "?"
	}
	return c.SerialNumber.Text(16)
}

func issuerCN(c *x509.Certificate) string {
	if c == nil {
		return "?"
	}
	return c.Issuer.CommonName
}

// startAdmissionLoad keeps sending admissions through the API server: 2
// workers of dry-run creates of Server-owned StatefulSets, worker 0's every
// 4th request the stand-in's full Update of the stored one; each must come
// back with the team's images. stop ends it and waits for the workers.
func (s *Suite) startAdmissionLoad(ctx context.Context, desired *appsv1.StatefulSet, want map[string]string) (*admissionLoad, func()) {
	load := newAdmissionLoad()
	loadCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				var imgs map[string]string
				var err error
				kind := "dry-run create"
				if w == 0 && i%4 == 3 {
					kind = "update"
					var stored *appsv1.StatefulSet
					stored, err = s.StandIn.Write(loadCtx, desired)
					if err == nil {
						imgs = k8s.TemplateImages(stored.Spec.Template.Spec)
					}
				} else {
					o := desired.DeepCopy()
					o.Name = fmt.Sprintf("mlserver-load-%d", w)
					var got *appsv1.StatefulSet
					got, err = s.CP.Kube.AppsV1().StatefulSets(certNS).Create(loadCtx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
					if err == nil {
						imgs = k8s.TemplateImages(got.Spec.Template.Spec)
					}
				}
				if loadCtx.Err() != nil {
					return // cancelled mid-request: not counted
				}
				if err == nil && !k8s.SameImages(imgs, want) {
					err = fmt.Errorf("not patched: %s", k8s.FmtImages(imgs))
				}
				load.record(kind, err)
				time.Sleep(20 * time.Millisecond)
			}
		}(w)
	}
	return load, func() { cancel(); wg.Wait() }
}
