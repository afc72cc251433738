// Package scenarios is the e2e suite: the Suite every scenario shares (one
// control plane, one webhook, the stand-in, the report), the scenarios in
// the order they run, and the demo.
package scenarios
