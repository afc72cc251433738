package scenarios

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioFaultClients (opt-in, SERVERCONFIG_E2E_ATTACKS=1, best with
// --release): what a client that reaches the webhook's port can do to its
// memory and file descriptors, measured on a replica with the shipped
// flags (issue 15, findings 2 and 3). Each attack's peak RSS (VmHWM, reset
// before it through /proc/PID/clear_refs) is a FIGURE line and is checked
// against the chart's memory limit; after each, a good review must still
// get its patch.
func scenarioFaultClients(ctx context.Context, s *Suite) error {
	const sc = "fault-hostile-clients"
	const limitBytes = 512 << 20 // deploy/helm values: resources.limits.memory
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	// 20,000 connections need more descriptors than the default limit here
	lim := syscall.Rlimit{Cur: 65536, Max: 65536}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		util.Step("%s: cannot raise the descriptor limit: %v", sc, err)
	}
	const ns, scName, server = "attacks", "attack-config", "attack"
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	if err := s.Apply(ctx, s.teamConfig(ns, scName), k8s.NewServer(ns, server, scName, 1, nil)); err != nil {
		return err
	}
	w := s.WH.ReplicaWithoutSync("serverconfig-webhook-attacks", "serverconfig-webhook-e2e-attacks")
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	good, err := s.goodReview(ctx, w, ns, server, imageList(s.teamImages(ns, "mlserver", scName)))
	if err != nil {
		return err
	}
	a := &attacks{s: s, w: w, sc: sc, good: good, limit: limitBytes}
	if err := a.check("baseline", func() (string, error) { return "", nil }); err != nil {
		return err
	}
	for _, at := range []struct {
		name string
		run  func() (string, error)
	}{
		{"http1-held-bodies", func() (string, error) { return a.heldBodiesHTTP1(64) }},
		{"http2-held-streams", func() (string, error) { return a.heldStreamsHTTP2(100) }},
		{"complete-review-1", func() (string, error) { return a.largeReviews(ctx, ns, server, 1) }},
		{"complete-review-4", func() (string, error) { return a.largeReviews(ctx, ns, server, 4) }},
		{"idle-connections", func() (string, error) { return a.idleConnections(20000) }},
	} {
		if err := a.check(at.name, at.run); err != nil {
			return err
		}
	}
	// the registered webhook, through the API server
	through := &attacks{s: s, w: s.WH, sc: sc, limit: limitBytes}
	if through.good, err = s.goodReview(ctx, s.WH, ns, server, imageList(s.teamImages(ns, "mlserver", scName))); err != nil {
		return err
	}
	return through.check("tenant-3mib-through-apiserver", func() (string, error) { return through.throughAPIServer(ctx, ns, server) })
}

type attacks struct {
	s     *Suite
	w     *controlplane.Webhook
	sc    string
	good  func() error
	limit int64
}

// check runs one attack: peak RSS reset before, measured after, a good
// review answered after.
func (a *attacks) check(name string, run func() (string, error)) error {
	pid := a.w.Pid()
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o200)
	detail, err := run()
	time.Sleep(300 * time.Millisecond)
	rss, hwm, merr := procMemory(pid)
	gerr := a.good()
	a.s.r.Check(checkName(a.sc, name), err == nil && merr == nil && hwm < a.limit && gerr == nil,
		"peak RSS %.1f MiB (limit %d MiB), RSS after %.1f MiB; %s; good review after: %v %v %v",
		float64(hwm)/(1<<20), a.limit>>20, float64(rss)/(1<<20), detail, gerr, err, merr)
	util.Step("FIGURE %s/%s: peak RSS %.1f MiB of the %d MiB limit; %s", a.sc, name, float64(hwm)/(1<<20), a.limit>>20, detail)
	return nil
}

func (a *attacks) tlsConfig(protos ...string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.w.CA.CertPEM)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: protos, MinVersion: tls.VersionTLS12}
}

func (a *attacks) addr() string { return fmt.Sprintf("127.0.0.1:%d", a.w.Port) }

// heldBodiesHTTP1: n connections each declare a body of the limit and send
// all of it but the last byte, then hold.
func (a *attacks) heldBodiesHTTP1(n int) (string, error) {
	const size = 6 << 20
	var mu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	chunk := bytes.Repeat([]byte(" "), 64<<10)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tls.Dial("tcp", a.addr(), a.tlsConfig("http/1.1"))
			if err != nil {
				mu.Lock()
				statuses["dial error"]++
				mu.Unlock()
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
			sent := 0
			for sent < size-1 {
				k := len(chunk)
				if size-1-sent < k {
					k = size - 1 - sent
				}
				_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
				m, err := c.Write(chunk[:k])
				sent += m
				if err != nil {
					break
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			m, _ := c.Read(buf)
			status := "held (no answer)"
			if m > 12 {
				status = strings.TrimSpace(string(buf[9:12]))
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d HTTP/1.1 connections, each a %d MiB body less one byte: %v", n, size>>20, statuses), nil
}

// heldStreamsHTTP2: one HTTP/2 connection, n streams, each a body of the
// limit less one byte that never ends.
func (a *attacks) heldStreamsHTTP2(n int) (string, error) {
	const size = 6 << 20
	tr := &http2.Transport{TLSClientConfig: a.tlsConfig("h2"), StrictMaxConcurrentStreams: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var mu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw := io.Pipe()
			go func() {
				chunk := bytes.Repeat([]byte(" "), 64<<10)
				sent := 0
				for sent < size-1 {
					k := len(chunk)
					if size-1-sent < k {
						k = size - 1 - sent
					}
					m, err := pw.Write(chunk[:k])
					sent += m
					if err != nil {
						return
					}
				}
				time.Sleep(4 * time.Second)
				pw.CloseWithError(fmt.Errorf("held"))
			}()
			req, _ := http.NewRequest(http.MethodPost, "https://"+a.addr()+"/mutate", pr)
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			status := "no answer"
			if err == nil {
				status = resp.Status
				resp.Body.Close()
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return fmt.Sprintf("one HTTP/2 connection, %d streams of a %d MiB body less one byte: %v", n, size>>20, statuses), nil
}

// largeReviews: k complete reviews at once, each as large as the body
// limit allows, in scope and within the value bounds (one huge annotation).
func (a *attacks) largeReviews(ctx context.Context, ns, server string, k int) (string, error) {
	desired, err := a.s.StandIn.Build(ctx, ns, server)
	if err != nil {
		return "", err
	}
	desired.Annotations["attack"] = strings.Repeat("x", (6<<20)-64<<10)
	body, err := AdmissionReviewFor(desired, "attack")
	if err != nil {
		return "", err
	}
	client, _ := WebhookClient([][]byte{a.w.CA.CertPEM}, nil)
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post("https://"+a.addr()+"/mutate", "application/json", bytes.NewReader(body))
			code := -1
			if err == nil {
				code = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			statuses[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d complete reviews of %.1f MiB at once: HTTP %v", k, float64(len(body))/(1<<20), statuses), nil
}

// idleConnections: n TLS connections that send nothing, held for 10 s,
// while a good review is sent every 100 ms; the descriptors the webhook
// holds are sampled.
func (a *attacks) idleConnections(n int) (string, error) {
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	peakFDs := 0
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
				if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.w.Pid())); err == nil && len(ents) > peakFDs {
					mu.Lock()
					peakFDs = len(ents)
					mu.Unlock()
				}
			}
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	failedDials := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", a.addr(), 2*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failedDials++
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	answered, failed := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if a.good() == nil {
			answered++
		} else {
			failed++
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(done)
	for _, c := range conns {
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	return fmt.Sprintf("%d idle connections opened (%d dials failed): the webhook held at most %d descriptors; good reviews meanwhile: %d answered, %d failed",
		len(conns), failedDials, peakFDs, answered, failed), nil
}

// throughAPIServer: a dry-run create of a workload owned by a Server, as
// large as the API server takes (about 3 MiB, within the webhook's bounds:
// 900 env entries of 3 KiB; annotations are capped at 256 KiB by the API
// server), sent to the registered webhook by the API server.
func (a *attacks) throughAPIServer(ctx context.Context, ns, server string) (string, error) {
	desired, err := a.s.StandIn.Build(ctx, ns, server)
	if err != nil {
		return "", err
	}
	desired.Name = "attack-large"
	var env []corev1.EnvVar
	for i := 0; i < 900; i++ {
		env = append(env, corev1.EnvVar{Name: fmt.Sprintf("E%03d", i), Value: strings.Repeat("x", 3<<10)})
	}
	if len(desired.Spec.Template.Spec.Containers) == 0 {
		desired.Spec.Template.Spec.Containers = []corev1.Container{{Name: "agent"}}
	}
	desired.Spec.Template.Spec.Containers[0].Env = env
	body, _ := json.Marshal(desired)
	_, aerr := a.s.CP.Kube.AppsV1().StatefulSets(ns).Create(ctx, desired, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return fmt.Sprintf("a %.1f MiB StatefulSet through the API server: %s", float64(len(body))/(1<<20), errOrOK(aerr)), nil
}

func errOrOK(err error) string {
	if err == nil {
		return "admitted"
	}
	return err.Error()
}

// goodReview is a check that webhook w answers a real review with a patch
// carrying want (the team's images).
func (s *Suite) goodReview(ctx context.Context, w *controlplane.Webhook, ns, server string, want []string) (func() error, error) {
	var desired *appsv1.StatefulSet
	if err := util.Poll(30*time.Second, func() error {
		var err error
		desired, err = s.StandIn.Build(ctx, ns, server)
		return err
	}); err != nil {
		return nil, err
	}
	body, err := AdmissionReviewFor(desired, "good")
	if err != nil {
		return nil, err
	}
	client, _ := WebhookClient([][]byte{w.CA.CertPEM}, nil)
	return func() error {
		resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d/mutate", w.Port), "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, err = reviewAnswer(resp.StatusCode, rb, "good", want)
		return err
	}, nil
}
