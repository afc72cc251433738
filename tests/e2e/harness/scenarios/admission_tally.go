package scenarios

import (
	"context"
	"fmt"
	"sync"
	"time"

	"serverconfig-webhook/e2e/harness/k8s"
)

// admissionTally sends an admission every 100 ms in the background (create
// returns the images the admitted object got) and counts which carried the
// wanted images, which the previous ones, and the errors; once seen() is
// called (the change reached the webhook), any old answer more than 200 ms
// later counts as stale after seen.
type admissionTally struct {
	mu                                 sync.Mutex
	stale, fresh, errs, staleAfterSeen int
	lastStale, seenAt                  time.Time
	cancel                             context.CancelFunc
	done                               chan struct{}
}

// tallyAdmissions starts sending; stop() ends it.
func tallyAdmissions(ctx context.Context, want map[string]string, create func(ctx context.Context, i int) (map[string]string, error)) *admissionTally {
	bg, cancel := context.WithCancel(ctx)
	t := &admissionTally{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		for i := 0; bg.Err() == nil; i++ {
			imgs, err := create(bg, i)
			t.record(bg, imgs, err, want)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return t
}

func (t *admissionTally) record(bg context.Context, imgs map[string]string, err error, want map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		if bg.Err() == nil {
			t.errs++
		}
	case k8s.SameImages(imgs, want):
		t.fresh++
	default:
		t.stale++
		t.lastStale = time.Now()
		if !t.seenAt.IsZero() && time.Since(t.seenAt) > 200*time.Millisecond {
			t.staleAfterSeen++
		}
	}
}

// seen marks the moment the webhook was seen using the change.
func (t *admissionTally) seen() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seenAt = time.Now()
}

// stop lets admissions flow for another `after` (answers after the change
// was seen), then stops and waits for the sender.
func (t *admissionTally) stop(after time.Duration) {
	time.Sleep(after)
	t.cancel()
	<-t.done
}

// ok: nothing stale after the change was seen, some fresh, no errors.
func (t *admissionTally) ok() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.staleAfterSeen == 0 && t.fresh > 0 && t.errs == 0
}

// staleCount is how many carried the previous images.
func (t *admissionTally) staleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stale
}

// describe says what the tally counted, the last stale answer measured
// from changed.
func (t *admissionTally) describe(changed time.Time) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := "none"
	if !t.lastStale.IsZero() {
		last = fmt.Sprintf("%s after the change was written", t.lastStale.Sub(changed).Round(time.Millisecond))
	}
	return fmt.Sprintf("%d with the previous images (last at %s), %d with the new, %d errors; %d stale after the change was seen",
		t.stale, last, t.fresh, t.errs, t.staleAfterSeen)
}
