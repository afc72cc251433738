package main

import (
	"fmt"
	"time"
)

// poll retries f every 250 ms until it returns nil or the timeout passes.
func poll(timeout time.Duration, f func() error) error {
	return pollEvery(timeout, 250*time.Millisecond, f)
}

// pollEvery is poll with a given interval.
func pollEvery(timeout, every time.Duration, f func() error) error {
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
