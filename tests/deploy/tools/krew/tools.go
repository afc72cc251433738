//go:build tools

// Package tools only pins the main packages tests/deploy/check.sh builds.
package tools

import (
	_ "sigs.k8s.io/krew/cmd/krew"
	_ "sigs.k8s.io/krew/cmd/validate-krew-manifest"
)
