package scenarios

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// faultNS is the application namespace of the fault scenarios' load: a
// team ServerConfig "mlserver" and a Server "mlserver" using it.
const faultNS = "fault-load"

// faultLoadRate is the open-loop rate of the fault scenarios' load (issue 7).
const faultLoadRate = 1000

// controlPlaneFaultRate is the review rate of the control-plane faults
// (etcd, throttling): below what a debug build answers on two cores, so
// that their figures are the webhook's while the control plane recovers
// beside it, not those of a saturated load generator.
const controlPlaneFaultRate = 200

// applyFaultFixtures: the team ServerConfig and Server in faultNS and the
// released ServerConfig of that name in the controller namespace (what the
// stand-in controller builds from).
func (s *Suite) applyFaultFixtures(ctx context.Context) error {
	if err := s.CP.EnsureNamespace(ctx, faultNS); err != nil {
		return err
	}
	return s.Apply(ctx,
		s.Fx.ControllerNSConfig("mlserver", "mlserver", k8s.FormPlatform),
		s.Fx.ServerConfig("mlserver", "mlserver", faultNS, "team"),
		k8s.NewServer(faultNS, "mlserver", "mlserver", 1, nil))
}

// readPair reads an issued certificate's PEM files as a Secret's data.
func readPair(c controlplane.CertFiles) (map[string][]byte, error) {
	crt, err := os.ReadFile(c.Cert)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(c.Key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{"tls.crt": crt, "tls.key": key}, nil
}

// RotateLeaf issues a serving leaf for 127.0.0.1 and localhost from ca
// (files pki/file.crt and .key) and swaps it into the kubelet-style volume
// vol (KubeletVolume, the ..data switch a Secret update makes), which a
// webhook serving vol/tls.crt and vol/tls.key reloads. Returns the leaf's
// serial (SerialHex).
func RotateLeaf(ca *controlplane.CA, pki, file, vol string) (string, error) {
	c, err := ca.Issue(pki, file, "serverconfig-webhook", nil, []string{"127.0.0.1", "localhost"})
	if err != nil {
		return "", err
	}
	pair, err := readPair(c)
	if err != nil {
		return "", err
	}
	l, err := parseLeaf(pair["tls.crt"])
	if err != nil {
		return "", err
	}
	return SerialHex(l), KubeletVolume(vol, pair)
}

// WaitLeafServed polls (every 50 ms, up to timeout) until a new TLS
// connection to 127.0.0.1:port gets the leaf with serial, verified against
// caPEM for localhost; it returns how long that took.
func WaitLeafServed(port int, caPEM []byte, serial string, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	err := util.PollEvery(timeout, 50*time.Millisecond, func() error {
		l, err := servedLeaf(port, caPEM, "localhost")
		if err != nil {
			return err
		}
		if SerialHex(l) != serial {
			return fmt.Errorf("still serving %s", SerialHex(l))
		}
		return nil
	})
	return time.Since(t0), err
}

// scenarioFaultCertRotation: a webhook replica serves its certificate from
// a kubelet-style volume (..data symlink) while an open-loop generator
// sends 1,000 AdmissionReviews/s straight to /mutate over TLS, closing idle
// connections every 250 ms so new handshakes keep happening. Two rotations
// through the ..data swap: a new leaf from the same CA, then a leaf from a
// new CA (the client trusts both CAs, as a caBundle does during a CA
// rotation). Figures: failed requests (target 0) and seconds from the swap
// until a handshake gets the new leaf (target <= 2; reload interval 1 s).
func scenarioFaultCertRotation(ctx context.Context, s *Suite) error {
	const sc = "fault-cert-rotation"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.applyFaultFixtures(ctx); err != nil {
		return err
	}
	pki := filepath.Join(s.CP.Dir, "pki")
	vol := filepath.Join(s.CP.Dir, "fault-rotation-tls")
	ca2, err := controlplane.NewCA(pki, "webhook-ca-2")
	if err != nil {
		return err
	}
	serials := make([]string, 3)
	if serials[0], err = RotateLeaf(s.WH.CA, pki, "fault-rot-1", vol); err != nil {
		return err
	}
	w := s.WH.Replica("serverconfig-webhook-rotation", "serverconfig-webhook-e2e-rotation")
	w.Cert = controlplane.CertFiles{Cert: filepath.Join(vol, "tls.crt"), Key: filepath.Join(vol, "tls.key")}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()

	body, want, err := s.loadReview(ctx, faultNS, "mlserver", "mlserver")
	if err != nil {
		return err
	}
	var hsMu sync.Mutex
	handshakes := map[string]int{}
	client, tr := WebhookClient([][]byte{s.WH.CA.CertPEM, ca2.CertPEM}, func(c *x509.Certificate) {
		hsMu.Lock()
		handshakes[SerialHex(c)]++
		hsMu.Unlock()
	})
	load := &OpenLoad{URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", w.Port), Client: client, Rate: faultLoadRate, Body: body, Want: want}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	done := make(chan struct{})
	go func() { load.Run(loadCtx); close(done) }()
	churnCtx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-churnCtx.Done():
				return
			case <-t.C:
				tr.CloseIdleConnections()
			}
		}
	}()
	time.Sleep(3 * time.Second)

	// rotation 1: same CA, new leaf (verified against the old CA alone);
	// rotation 2: a new CA's leaf (verified against the new CA alone)
	took := make([]float64, 3)
	rotated := make([]bool, 3)
	for _, r := range []struct {
		i  int
		ca *controlplane.CA
	}{{1, s.WH.CA}, {2, ca2}} {
		var err error
		if serials[r.i], err = RotateLeaf(r.ca, pki, fmt.Sprintf("fault-rot-%d", r.i+1), vol); err != nil {
			return err
		}
		d, perr := WaitLeafServed(w.Port, r.ca.CertPEM, serials[r.i], 15*time.Second)
		took[r.i], rotated[r.i] = d.Seconds(), perr == nil
		util.Step("%s: leaf %d (%s) served %.2f s after the ..data swap (%v)", sc, r.i+1, serials[r.i], took[r.i], perr)
		time.Sleep(3 * time.Second) // load keeps flowing on the new leaf
	}
	stopChurn()
	stopLoad()
	<-done
	f := load.Figures()
	hsMu.Lock()
	hs := fmt.Sprintf("handshakes per leaf: %s %d, %s %d, %s %d", serials[0], handshakes[serials[0]], serials[1], handshakes[serials[1]], serials[2], handshakes[serials[2]])
	allLeaves := handshakes[serials[0]] > 0 && handshakes[serials[1]] > 0 && handshakes[serials[2]] > 0
	hsMu.Unlock()

	s.r.Check(checkName(sc, "same-ca-new-leaf-served"), rotated[1] && took[1] <= 10,
		"new leaf of the same CA served %.2f s after the ..data swap (target <= 2 s; --cert-reload-interval 1s)", took[1])
	s.r.Check(checkName(sc, "new-ca-leaf-served"), rotated[2] && took[2] <= 10,
		"leaf of a new CA served %.2f s after the ..data swap (target <= 2 s)", took[2])
	s.r.Check(checkName(sc, "zero-failed-requests"), f.Failed == 0 && f.OK > 0 && allLeaves,
		"open loop at %d/s straight to /mutate over TLS, idle connections closed every 250 ms: %s; %s", faultLoadRate, f, hs)
	util.Step("FIGURE %s: failed %d of %d requests (%.0f/s achieved); new leaf served after %.2f s (same CA) and %.2f s (new CA)",
		sc, f.Failed, f.Started, f.Rate, took[1], took[2])
	return nil
}
