// Package bench is `e2e bench` (issue 6 benchmarks 3/4: concurrent
// StatefulSet creates with the webhook, without it, and with a
// MutatingAdmissionPolicy) and `e2e bench-fixture` (the control plane and
// fixture the load benchmark of benches/load/ runs against).
package bench
