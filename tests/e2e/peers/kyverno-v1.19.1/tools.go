//go:build tools

// Package peers only pins the main package the benchmark builds: Kyverno's
// admission controller, github.com/kyverno/kyverno/cmd/kyverno, unmodified.
// Built only by `cargo xtask bench-e2e`, never by `cargo xtask test`.
package peers

import _ "github.com/kyverno/kyverno/cmd/kyverno"
