package k8s

import (
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Fixtures: the real Seldon 2.9.1 ServerConfigs (tests/fixtures, copied from
// the released manifests) and builders for the variants the scenarios need.
type Fixtures struct {
	real map[string]*unstructured.Unstructured // mlserver, triton
}

// ControllerNS is the Seldon controller's namespace (the platform
// ServerConfigs live there).
const ControllerNS = "seldon-system"

func LoadFixtures(repo string) (*Fixtures, error) {
	objs, err := DecodeYAMLFile(filepath.Join(repo, "tests", "fixtures", "serverconfigs.yaml"))
	if err != nil {
		return nil, err
	}
	f := &Fixtures{real: map[string]*unstructured.Unstructured{}}
	for _, o := range objs {
		if o.GetKind() == "ServerConfig" {
			f.real[o.GetName()] = o
		}
	}
	for _, n := range []string{"mlserver", "triton"} {
		if f.real[n] == nil {
			return nil, fmt.Errorf("tests/fixtures/serverconfigs.yaml: no ServerConfig %q", n)
		}
	}
	return f, nil
}

// TeamImage is the image a team's own ServerConfig in namespace ns uses in
// place of the released one: harbor.test/<ns>/<repo>:<tag>.
func TeamImage(ns, released string) string {
	last := released[strings.LastIndex(released, "/")+1:]
	return fmt.Sprintf("harbor.test/%s/%s", ns, last)
}

// ServerConfigForm says which ServerConfig of a name is in the controller
// namespace: the two forms the seed's failure takes.
type ServerConfigForm string

const (
	FormEmpty    ServerConfigForm = "empty-images"    // containers without images
	FormPlatform ServerConfigForm = "platform-images" // a real config with other images
)

// ServerConfig returns a copy of the real ServerConfig base named name in ns;
// images: "team" (TeamImage for ns), "empty" (no image field) or "platform"
// (as released).
func (f *Fixtures) ServerConfig(base, name, ns, images string) *unstructured.Unstructured {
	o := f.real[base].DeepCopy()
	o.SetName(name)
	o.SetNamespace(ns)
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "podSpec", "containers")
	for i, c := range cs {
		cm := c.(map[string]any)
		img, _ := cm["image"].(string)
		switch images {
		case "team":
			cm["image"] = TeamImage(ns, img)
		case "empty":
			delete(cm, "image")
		case "platform":
		default:
			panic("unknown images kind " + images)
		}
		cs[i] = cm
	}
	_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "podSpec", "containers")
	return o
}

// WithImageSuffix is sc with suffix appended to every container's image
// (a new version of a ServerConfig, e.g. a new tag); sc is changed in place
// and returned.
func WithImageSuffix(sc *unstructured.Unstructured, suffix string) *unstructured.Unstructured {
	cs, _, _ := unstructured.NestedSlice(sc.Object, "spec", "podSpec", "containers")
	for i, c := range cs {
		cm := c.(map[string]any)
		cm["image"] = fmt.Sprint(cm["image"]) + suffix
		cs[i] = cm
	}
	_ = unstructured.SetNestedSlice(sc.Object, cs, "spec", "podSpec", "containers")
	return sc
}

// ControllerNSConfig is the controller-namespace ServerConfig in a form.
func (f *Fixtures) ControllerNSConfig(base, name string, form ServerConfigForm) *unstructured.Unstructured {
	if form == FormEmpty {
		return f.ServerConfig(base, name, ControllerNS, "empty")
	}
	return f.ServerConfig(base, name, ControllerNS, "platform")
}

// Server builds a Server; spec entries in extra are merged into spec.
func NewServer(ns, name, serverConfig string, replicas int64, extra map[string]any) *unstructured.Unstructured {
	spec := map[string]any{
		"serverConfig": serverConfig,
		"replicas":     replicas,
		"statefulSetPersistentVolumeClaimRetentionPolicy": map[string]any{"whenDeleted": "Retain", "whenScaled": "Retain"},
	}
	for k, v := range extra {
		spec[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mlops.seldon.io/v1alpha1",
		"kind":       "Server",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
}

// ExpectedImages is container name -> image of a ServerConfig object.
func ExpectedImages(sc *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	cs, _, _ := unstructured.NestedSlice(sc.Object, "spec", "podSpec", "containers")
	for _, c := range cs {
		cm := c.(map[string]any)
		img, _ := cm["image"].(string)
		out[cm["name"].(string)] = img
	}
	return out
}
