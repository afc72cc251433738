// Package util is the harness's plumbing: child processes (each in its own
// process group, all ended at exit or on a signal), the PASS/FAIL report,
// progress lines on stderr, and polling.
package util
