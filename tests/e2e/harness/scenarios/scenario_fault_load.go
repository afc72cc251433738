package scenarios

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// Helpers of the fault scenarios (scenario_fault_*.go) and of the soak
// (bench/soak.go): a realistic AdmissionReview for a Server-owned
// StatefulSet, and an open-loop load generator that sends it to a webhook's
// /mutate directly over TLS.

// AdmissionReviewFor is the AdmissionReview the API server sends for a
// CREATE of sts by the Seldon controller's ServiceAccount.
func AdmissionReviewFor(sts *appsv1.StatefulSet, uid string) ([]byte, error) {
	obj := sts.DeepCopy()
	obj.APIVersion, obj.Kind = "apps/v1", "StatefulSet"
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	gvk := map[string]any{"group": "apps", "version": "v1", "kind": "StatefulSet"}
	gvr := map[string]any{"group": "apps", "version": "v1", "resource": "statefulsets"}
	return json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
			"name": sts.Name, "namespace": sts.Namespace, "operation": "CREATE",
			"userInfo": map[string]any{"username": "system:serviceaccount:" + k8s.ControllerNS + ":seldon-manager",
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:" + k8s.ControllerNS, "system:authenticated"}},
			"object":  json.RawMessage(raw),
			"dryRun":  false,
			"options": map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "manager"},
		},
	})
}

// reviewAnswer checks one /mutate answer: HTTP 200, the uid echoed,
// allowed, and a JSONPatch whose text contains every one of want (the
// images the namespace's own ServerConfig names). It returns the patch text.
func reviewAnswer(status int, body []byte, uid string, want []string) (string, error) {
	if status != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", status, util.OneLine(string(body)))
	}
	var r struct {
		Response struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Patch   string `json:"patch"`
			Status  struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("not an AdmissionReview: %v", err)
	}
	if r.Response.UID != uid {
		return "", fmt.Errorf("uid %q, want %q", r.Response.UID, uid)
	}
	if !r.Response.Allowed {
		return "", fmt.Errorf("denied: %s", r.Response.Status.Message)
	}
	p, err := base64.StdEncoding.DecodeString(r.Response.Patch)
	if err != nil {
		return "", fmt.Errorf("patch: %v", err)
	}
	for _, w := range want {
		if !bytes.Contains(p, []byte(w)) {
			return string(p), fmt.Errorf("patch lacks %s: %s", w, util.OneLine(string(p)))
		}
	}
	return string(p), nil
}

// PostReview sends one AdmissionReview body to url and checks the answer
// as reviewAnswer does (200, uid echoed, allowed); it returns the decoded
// patch.
func PostReview(client *http.Client, url string, body []byte, uid string) (string, error) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return reviewAnswer(resp.StatusCode, rb, uid, nil)
}

// imageList is the sorted image values of a container -> image map.
func imageList(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// WebhookClient is an HTTP/1.1 client for a webhook serving a certificate
// for 127.0.0.1 signed by one of cas; onHandshake sees every new
// connection's leaf.
func WebhookClient(cas [][]byte, onHandshake func(*x509.Certificate)) (*http.Client, *http.Transport) {
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AppendCertsFromPEM(c)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if onHandshake != nil && len(cs.PeerCertificates) > 0 {
					onHandshake(cs.PeerCertificates[0])
				}
				return nil
			}},
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256,
		IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: 5 * time.Second,
		// the API server's webhook client has a 10 s timeout (the shipped
		// registration's timeoutSeconds); the same here
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr
}

// OpenLoad is an open-loop load generator: requests are started on a fixed
// schedule (Rate per second) whatever the answers take, each on its own
// goroutine, at most MaxInFlight at once (beyond that a scheduled request
// is counted as not sent: the generator, not the webhook, was saturated).
type OpenLoad struct {
	URL    string
	Client *http.Client
	Rate   int
	Body   func(i int64) ([]byte, string) // request i's body and its uid
	Want   []string                       // images every answer's patch must carry (when Check is nil)
	// Check, when set, replaces Want: it sees request i's decoded patch,
	// when the request was sent and when its answer was read; an error
	// counts the request as failed
	Check func(i int64, sent, answered time.Time, patch string) error
	// Route, when set, is asked before each request: false means the
	// endpoint is out of rotation (as kube-proxy / the API server's
	// endpoint resolution would stop using a not-ready pod), not sent
	Route func() bool

	MaxInFlight int64 // 0: 128
	InFlight    atomic.Int64

	mu            sync.Mutex
	started       int64
	ok            int64
	failed        int64
	failedWritten int64 // failures after the request was written (in flight)
	refused       int64 // failures before anything was written (dial refused)
	notSent       int64 // generator saturated
	unrouted      int64 // out of rotation
	http2         int64 // answers that came over HTTP/2
	lat           []time.Duration
	errs          []string
	firstStart    time.Time
	lastStart     time.Time
	wg            sync.WaitGroup
}

// LoadFigures are an OpenLoad's counts and latencies so far.
type LoadFigures struct {
	Started, OK, Failed, FailedInFlight, Refused, NotSent, Unrouted int64
	HTTP2                                                           int64 // answers over HTTP/2
	Seconds                                                         float64
	Rate                                                            float64 // achieved starts per second
	P50, P99, Max                                                   time.Duration
	Errors                                                          string
}

func (f LoadFigures) String() string {
	return fmt.Sprintf("%d requests started over %.1f s (%.0f/s), %d ok (%d over HTTP/2), %d failed (%d of them in flight, %d refused before sending), %d not sent (generator saturated), latency p50 %s p99 %s max %s%s",
		f.Started, f.Seconds, f.Rate, f.OK, f.HTTP2, f.Failed, f.FailedInFlight, f.Refused, f.NotSent,
		f.P50.Round(100*time.Microsecond), f.P99.Round(100*time.Microsecond), f.Max.Round(100*time.Microsecond), f.Errors)
}

// Run sends until ctx ends, then waits for the requests in flight.
func (l *OpenLoad) Run(ctx context.Context) {
	if l.MaxInFlight == 0 {
		l.MaxInFlight = 128
	}
	interval := time.Second / time.Duration(l.Rate)
	start := time.Now()
	l.mu.Lock()
	l.firstStart = start
	l.mu.Unlock()
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				l.wg.Wait()
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			l.wg.Wait()
			return
		}
		if l.Route != nil && !l.Route() {
			l.mu.Lock()
			l.unrouted++
			l.mu.Unlock()
			continue
		}
		if l.InFlight.Load() >= l.MaxInFlight {
			l.mu.Lock()
			l.notSent++
			l.mu.Unlock()
			continue
		}
		l.InFlight.Add(1)
		l.wg.Add(1)
		l.mu.Lock()
		l.started++
		l.lastStart = time.Now()
		l.mu.Unlock()
		go func(i int64) {
			defer l.wg.Done()
			defer l.InFlight.Add(-1)
			l.one(i)
		}(i)
	}
}

func (l *OpenLoad) one(i int64) {
	body, uid := l.Body(i)
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, l.URL, bytes.NewReader(body))
	if err != nil {
		l.record(0, err, false)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := l.Client.Do(req)
	if err == nil {
		if resp.ProtoMajor == 2 {
			l.mu.Lock()
			l.http2++
			l.mu.Unlock()
		}
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && l.Check == nil {
			_, err = reviewAnswer(resp.StatusCode, b, uid, l.Want)
		} else if err == nil {
			var patch string
			if patch, err = reviewAnswer(resp.StatusCode, b, uid, nil); err == nil {
				err = l.Check(i, t0, time.Now(), patch)
			}
		}
	}
	l.record(time.Since(t0), err, wrote.Load())
}

func (l *OpenLoad) record(d time.Duration, err error, written bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.ok++
		l.lat = append(l.lat, d)
		return
	}
	l.failed++
	if written {
		l.failedWritten++
	} else {
		l.refused++
	}
	if len(l.errs) < 3 {
		l.errs = append(l.errs, fmt.Sprintf("%s (written %v): %v", time.Now().Format("15:04:05.000"), written, err))
	}
}

// WebhookClientH2 is WebhookClient speaking HTTP/2, as kube-apiserver's
// webhook client does: one connection for every request. An HTTP/1.1
// pool parks the connections it dialed but did not need; the webhook
// closes those after its first-byte timeout, and a POST racing the close
// fails with a reset (Go's client, like the API server's, does not retry
// a POST).
func WebhookClientH2(cas [][]byte) *http.Client {
	c, tr := WebhookClient(cas, nil)
	tr.ForceAttemptHTTP2 = true
	return c
}

// refusalsSince is the webhook's refusals_total between two scrapes, per
// reason: the connections and requests it turned away.
func refusalsSince(before, after string) string {
	const m = "serverconfig_webhook_refusals_total"
	var parts []string
	for _, r := range []string{"connection_cap", "evicted", "idle", "inflight_bytes", "too_large"} {
		l := `reason="` + r + `"`
		if d := metricTotal(after, m, l) - metricTotal(before, m, l); d != 0 {
			parts = append(parts, fmt.Sprintf("%s=%.0f", r, d))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// Figures are the counts and latencies so far.
func (l *OpenLoad) Figures() LoadFigures {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := LoadFigures{Started: l.started, OK: l.ok, Failed: l.failed, FailedInFlight: l.failedWritten,
		Refused: l.refused, NotSent: l.notSent, Unrouted: l.unrouted, HTTP2: l.http2}
	f.Seconds = l.lastStart.Sub(l.firstStart).Seconds()
	if f.Seconds > 0 {
		f.Rate = float64(l.started) / f.Seconds
	}
	if len(l.lat) > 0 {
		lat := append([]time.Duration(nil), l.lat...)
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		f.P50, f.P99, f.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	if len(l.errs) > 0 {
		f.Errors = "; first errors: " + strings.Join(l.errs, "; ")
	}
	return f
}

// loadReview prepares the realistic review body for the Server ns/name (its
// StatefulSet as the stand-in controller builds it) and the team images the
// answer must carry; each request gets its own uid.
func (s *Suite) loadReview(ctx context.Context, ns, server, scName string) (func(int64) ([]byte, string), []string, error) {
	desired, err := s.StandIn.Build(ctx, ns, server)
	if err != nil {
		return nil, nil, err
	}
	body, err := ReviewBodies(desired)
	if err != nil {
		return nil, nil, err
	}
	return body, imageList(s.teamImages(ns, "mlserver", scName)), nil
}

// ReviewBodies makes request bodies for a CREATE of desired
// (AdmissionReviewFor): one marshalled template, request n's uid spliced in.
func ReviewBodies(desired *appsv1.StatefulSet) (func(int64) ([]byte, string), error) {
	const marker = "00000000-0000-0000-0000-00000000uuid"
	tmpl, err := AdmissionReviewFor(desired, marker)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(tmpl, []byte(marker))
	head, tail := tmpl[:i], tmpl[i+len(marker):]
	return func(n int64) ([]byte, string) {
		uid := fmt.Sprintf("00000000-0000-0000-0000-%012d", n)
		b := make([]byte, 0, len(tmpl))
		b = append(append(append(b, head...), uid...), tail...)
		return b, uid
	}, nil
}
