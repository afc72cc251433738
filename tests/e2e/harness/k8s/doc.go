// Package k8s is what every part of the harness uses about Kubernetes
// objects: the resources it addresses, YAML decoding, and the Seldon
// fixtures (the released ServerConfigs and the Servers the scenarios build),
// and the container-to-image maps the checks compare.
package k8s
