//go:build tools

// Package tools only pins the main package tests/deploy/check.sh builds.
package tools

import _ "sigs.k8s.io/kustomize/kustomize/v5"
