package util

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
	Failed int // checks that failed so far
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
		r.Failed++
		r.fails = append(r.fails, name)
		fmt.Printf("FAIL %s", name)
	}
	if detail != "" {
		fmt.Printf(": %s", OneLine(detail))
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
	fmt.Printf("e2e: %d passed, %d failed\n", r.passed, r.Failed)
	if r.Failed > 0 {
		return 1
	}
	return 0
}

// OneLine puts s on one line, cut to 600 bytes, for PASS/FAIL lines.
func OneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}

var start = time.Now()

// Verbose (-v) also logs every write of the stand-in controller.
var Verbose bool

// Step prints a progress line (to stderr, so stdout stays PASS/FAIL lines).
func Step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}
