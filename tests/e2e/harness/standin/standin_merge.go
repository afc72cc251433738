package standin

import (
	"strings"

	"dario.cat/mergo"
	corev1 "k8s.io/api/core/v1"
)

// STAND-IN CODE: a re-implementation, from the written description in
// shared/docs/seldon-controller-behaviour.md section 4, of how the stock
// Seldon 2.9.1 controller merges a ServerConfig's pod spec with a Server's
// podSpec. The stock controller could not be built here (its Go modules are
// not served by the module proxy this project may use). It only produces
// the INPUT the webhook receives; it is never used as an expected output.

// mergePodSpecs: deep copy of the ServerConfig pod spec; a Server override
// is merged with override-wins and append-slices; containers merged by name.
func mergePodSpecs(base *corev1.PodSpec, override *corev1.PodSpec) (*corev1.PodSpec, error) {
	out := base.DeepCopy()
	if override == nil {
		return out, nil
	}
	if err := mergo.Merge(out, override.DeepCopy(), mergo.WithOverride, mergo.WithAppendSlice); err != nil {
		return nil, err
	}
	cs, err := mergeContainers(base.Containers, override.Containers)
	if err != nil {
		return nil, err
	}
	out.Containers = cs
	return out, nil
}

// mergeContainers: override containers first (merged field by field with a
// same-named ServerConfig container), then the ServerConfig containers that
// were not overridden, in their order.
func mergeContainers(existing, overrides []corev1.Container) ([]corev1.Container, error) {
	var out []corev1.Container
	seen := map[string]bool{}
	for _, o := range overrides {
		merged := false
		for _, e := range existing {
			if e.Name == o.Name {
				c := e.DeepCopy()
				if err := mergo.Merge(c, o.DeepCopy(), mergo.WithOverride, mergo.WithAppendSlice); err != nil {
					return nil, err
				}
				out = append(out, *c)
				seen[e.Name] = true
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, *o.DeepCopy())
		}
	}
	for _, e := range existing {
		if !seen[e.Name] {
			out = append(out, *e.DeepCopy())
		}
	}
	return out, nil
}

// updateCapabilities: SELDON_SERVER_CAPABILITIES is replaced by
// spec.capabilities, or extended by spec.extraCapabilities.
func updateCapabilities(spec *corev1.PodSpec, capabilities, extra []string) {
	for ci := range spec.Containers {
		for ei := range spec.Containers[ci].Env {
			env := &spec.Containers[ci].Env[ei]
			if env.Name != "SELDON_SERVER_CAPABILITIES" {
				continue
			}
			if len(capabilities) > 0 {
				env.Value = strings.Join(capabilities, ",")
			} else if len(extra) > 0 {
				env.Value = env.Value + "," + strings.Join(extra, ",")
			}
		}
	}
}
