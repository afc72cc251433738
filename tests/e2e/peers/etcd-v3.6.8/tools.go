//go:build tools

// Package peers only pins the main package the harness builds.
package peers

import _ "go.etcd.io/etcd/server/v3"
