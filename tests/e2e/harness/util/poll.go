package util

import (
	"fmt"
	"time"
)

// Poll retries f every 250 ms until it returns nil or the timeout passes.
func Poll(timeout time.Duration, f func() error) error {
	return PollEvery(timeout, 250*time.Millisecond, f)
}

// PollEvery is poll with a given interval.
func PollEvery(timeout, every time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v: %w", timeout, err)
		}
		time.Sleep(every)
	}
}
