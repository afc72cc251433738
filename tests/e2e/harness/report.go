package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Report counts checks. Every check prints exactly one PASS or FAIL line.
type Report struct {
	mu     sync.Mutex
	passed int
	failed int
	fails  []string
}

func (r *Report) Check(name string, ok bool, format string, args ...any) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	detail := fmt.Sprintf(format, args...)
	if ok {
		r.passed++
		fmt.Printf("PASS %s", name)
	} else {
		r.failed++
		r.fails = append(r.fails, name)
		fmt.Printf("FAIL %s", name)
	}
	if detail != "" {
		fmt.Printf(": %s", oneLine(detail))
	}
	fmt.Println()
	return ok
}

// Fail records a failed check caused by an error in the scenario itself.
func (r *Report) Fail(name string, err error) { r.Check(name, false, "%v", err) }

func (r *Report) Summary() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fails) > 0 {
		fmt.Printf("failed checks: %s\n", strings.Join(r.fails, ", "))
	}
	fmt.Printf("e2e: %d passed, %d failed\n", r.passed, r.failed)
	if r.failed > 0 {
		return 1
	}
	return 0
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}

var start = time.Now()

// verbose (-v) also logs every write of the stand-in controller.
var verbose bool

// step prints a progress line (to stderr, so stdout stays PASS/FAIL lines).
func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}
