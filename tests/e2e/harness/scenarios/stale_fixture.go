package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// staleFixture is what the staleness scenarios share: a team ServerConfig
// (and the controller namespace's of the same name) and a Server using it,
// the stand-in's StatefulSet for it, and direct reviews of it to the
// webhook (over HTTP/2, as the API server sends them), to time how long a
// ServerConfig change takes to reach the answers.
type staleFixture struct {
	s          *Suite
	ns, config string
	desired    *appsv1.StatefulSet
	body       func(int64) ([]byte, string)
	client     *http.Client
	n          int64
	changed    time.Time // when the last change was written
}

// newStaleFixture applies the objects and waits until the webhook answers
// with the team's images; cleanup removes the controller namespace's copy.
func (s *Suite) newStaleFixture(ctx context.Context, ns, config, server string) (*staleFixture, func(), error) {
	if err := s.needWebhook(ctx); err != nil {
		return nil, nil, err
	}
	if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
		return nil, nil, err
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", config, k8s.FormPlatform), s.teamConfig(ns, config),
		k8s.NewServer(ns, server, config, 1, nil)); err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = s.deleteSC(context.Background(), k8s.ControllerNS, config) }
	f := &staleFixture{s: s, ns: ns, config: config}
	var err error
	if f.desired, err = s.StandIn.Build(ctx, ns, server); err != nil {
		cleanup()
		return nil, nil, err
	}
	if f.body, _, err = s.loadReview(ctx, ns, server, config); err != nil {
		cleanup()
		return nil, nil, err
	}
	f.client = WebhookClientH2([][]byte{s.WH.CA.CertPEM})
	if err := util.Poll(20*time.Second, func() error { return f.probe(f.images("")) }); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("webhook not serving the team's images: %w", err)
	}
	return f, cleanup, nil
}

// images are the team ServerConfig's images with tag appended ("" as applied first).
func (f *staleFixture) images(tag string) map[string]string {
	if tag == "" {
		return k8s.ExpectedImages(f.s.teamConfig(f.ns, f.config))
	}
	return k8s.ExpectedImages(f.s.teamConfigSuffix(f.ns, f.config, tag))
}

// probe sends one direct review and checks its patch carries want.
func (f *staleFixture) probe(want map[string]string) error {
	f.n++
	return f.s.directProbe(f.client, f.body, f.n, imageList(want))
}

// change writes the ServerConfig with tag and returns how long until a
// direct review carried its images (polled every 20 ms up to timeout).
func (f *staleFixture) change(ctx context.Context, tag string, timeout time.Duration) (time.Duration, error) {
	if err := f.s.Apply(ctx, f.s.teamConfigSuffix(f.ns, f.config, tag)); err != nil {
		return 0, err
	}
	f.changed = time.Now()
	want := f.images(tag)
	err := util.PollEvery(timeout, 20*time.Millisecond, func() error { return f.probe(want) })
	return time.Since(f.changed), err
}

// changeWhileAdmitting is change while dry-run creates of the fixture's
// StatefulSet (named prefix0 to prefix3) go through the API server every
// 100 ms, counting those that used the old ServerConfig; the tally stops 2 s
// after the change was seen, since admissions keep flowing after it.
func (f *staleFixture) changeWhileAdmitting(ctx context.Context, tag, prefix string, timeout time.Duration) (time.Duration, *admissionTally, error) {
	tally := tallyAdmissions(ctx, f.images(tag), func(ctx context.Context, i int) (map[string]string, error) {
		return f.s.dryRunImages(ctx, f.desired, fmt.Sprintf("%s%d", prefix, i%4))
	})
	took, err := f.change(ctx, tag, timeout)
	tally.seen()
	tally.stop(2 * time.Second)
	return took, tally, err
}

// restore writes the team ServerConfig back as first applied.
func (f *staleFixture) restore(ctx context.Context) error {
	return f.s.Apply(ctx, f.s.teamConfig(f.ns, f.config))
}
