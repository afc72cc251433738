//go:build tools

// Package peers only pins the main package the alert checks build:
// Prometheus' promtool, github.com/prometheus/prometheus/cmd/promtool,
// unmodified (`promtool check rules`, `test rules`, `check metrics`).
package peers

import _ "github.com/prometheus/prometheus/cmd/promtool"
