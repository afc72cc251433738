package k8s

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TemplateImages maps each container of the pod spec to its image.
func TemplateImages(spec corev1.PodSpec) map[string]string {
	out := map[string]string{}
	for _, c := range spec.Containers {
		out[c.Name] = c.Image
	}
	return out
}

// FmtImages shows an image map as sorted name=image pairs.
func FmtImages(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []string
	for _, k := range keys {
		v := m[k]
		if v == "" {
			v = "<empty>"
		}
		b = append(b, k+"="+v)
	}
	return strings.Join(b, " ")
}

// SameImages: the two image maps are equal.
func SameImages(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// WebhookAnnotations are the serverconfig-webhook/ annotations of an object.
func WebhookAnnotations(m metav1.ObjectMeta) map[string]string {
	out := map[string]string{}
	for k, v := range m.Annotations {
		if strings.HasPrefix(k, "serverconfig-webhook/") {
			out[k] = v
		}
	}
	return out
}
