// Package standin is the stand-in for the stock Seldon Server controller
// (2.9.1 with StatefulSets, 2.10.2 with Deployments; the real one cannot be
// built here): one reconcile as Seldon's, driven by hand or run as a
// controller, and the real controller's recorded trace it is calibrated
// against.
package standin
