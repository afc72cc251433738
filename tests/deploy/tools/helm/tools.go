//go:build tools

// Package tools only pins the main package tests/deploy/check.sh builds.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
