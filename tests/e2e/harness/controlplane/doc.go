// Package controlplane runs the real control plane (etcd, kube-apiserver,
// kube-controller-manager) and the webhook process from the driver's Config,
// and applies the shipped deploy artefacts to it: RBAC, the webhook's
// registration, the rendered chart and kustomize base.
package controlplane
