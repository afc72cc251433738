package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/util"
)

// kubeletDelay is how long after the Secret changes the harness swaps the
// volume in deploy-ca-rotation (a real kubelet: up to its sync period,
// about a minute).
const kubeletDelay = 5 * time.Second

// scenarioDeployCARotation: the chart's CA Certificate is renewed (the chart
// keeps its key: rotationPolicy Never), then the serving Certificate; cainjector
// puts the NEW CA into the caBundle as soon as the serving Secret changes,
// while the webhook still serves the old leaf until the kubelet refreshes
// the volume (kubeletDelay here). Admissions keep flowing; the check wants
// zero failures.
func scenarioDeployCARotation(ctx context.Context, s *Suite) error {
	const sc = "deploy-ca-rotation"
	defer s.restoreHarnessTLS(context.Background())
	if err := s.useCertManagerTLS(ctx, sc); err != nil {
		return err
	}
	if err := s.applyCertNSFixtures(ctx); err != nil {
		return err
	}
	if _, _, err := s.StandIn.Reconcile(ctx, certNS, "mlserver"); err != nil {
		return err
	}
	desired, err := s.StandIn.Build(ctx, certNS, "mlserver")
	if err != nil {
		return err
	}
	load, stopLoad := s.startAdmissionLoad(ctx, desired, s.teamImages(certNS, "mlserver", "mlserver"))
	defer stopLoad()
	time.Sleep(2 * time.Second)

	caSec, err := s.CP.Kube.CoreV1().Secrets(controlplane.ReleaseNS).Get(ctx, controlplane.CACertName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := triggerRenewalOf(ctx, s, controlplane.CACertName); err != nil {
		return err
	}
	if err := util.PollEvery(60*time.Second, 50*time.Millisecond, func() error {
		n, err := s.CP.Kube.CoreV1().Secrets(controlplane.ReleaseNS).Get(ctx, controlplane.CACertName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if bytes.Equal(n.Data["tls.crt"], caSec.Data["tls.crt"]) {
			return fmt.Errorf("CA unchanged")
		}
		return nil
	}); err != nil {
		return err
	}
	if _, err := s.waitCertificateReady(ctx, controlplane.CACertName, 60*time.Second); err != nil {
		return err
	}
	afterCA := load.snapshot()
	old, err := s.servingSecret(ctx)
	if err != nil {
		return err
	}
	if err := triggerRenewal(ctx, s); err != nil {
		return err
	}
	newSec, err := s.secretChanged(ctx, old.Data["tls.crt"], 60*time.Second)
	if err != nil {
		return err
	}
	tSecret := time.Now()
	caChanged := !bytes.Equal(newSec.Data["ca.crt"], old.Data["ca.crt"])
	time.Sleep(kubeletDelay)
	if err := KubeletVolume(cm.kubeletDir, newSec.Data); err != nil {
		return err
	}
	newLeaf, _ := parseLeaf(newSec.Data["tls.crt"])
	perr := util.PollEvery(30*time.Second, 50*time.Millisecond, func() error {
		l, err := servedLeaf(s.WH.Port, newSec.Data["ca.crt"], "serverconfig-webhook.serverconfig-webhook-system.svc")
		if err != nil {
			return err
		}
		if l.SerialNumber.Cmp(newLeaf.SerialNumber) != 0 {
			return fmt.Errorf("old leaf")
		}
		return nil
	})
	tServed := time.Now()
	time.Sleep(3 * time.Second)
	stopLoad()
	final := load.snapshot()
	s.r.Check(checkName(sc, "ca-renewed-only-ca"), afterCA.failed == 0, "CA renewed: %d admissions so far, %d failed (serving Secret and caBundle still the old CA)", afterCA.attempted, afterCA.failed)
	s.r.Check(checkName(sc, "zero-failed-admissions"), perr == nil && final.failed == 0,
		"serving leaf re-issued by the new CA (ca.crt changed: %v); volume swapped %v after the Secret, new leaf served %.1fs after the Secret: %d admissions, %d failed%s",
		caChanged, kubeletDelay, tServed.Sub(tSecret).Seconds(), final.attempted, final.failed, load.errorsText())
	return nil
}
