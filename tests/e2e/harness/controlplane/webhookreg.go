package controlplane

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
)

// The registration is read from the ONE source the deploy manifests ship,
// deploy/kustomize/mutatingwebhookconfiguration.yaml. Only clientConfig is
// swapped (service -> url + caBundle); rules, selectors, matchConditions,
// failurePolicy, sideEffects, timeoutSeconds, reinvocationPolicy and
// everything else are kept as shipped.
const RegistrationSource = "deploy/kustomize/mutatingwebhookconfiguration.yaml"

// LoadRegistration returns the shipped MutatingWebhookConfiguration with its
// clientConfig pointed at a local webhook on 127.0.0.1:port.
func LoadRegistration(repo string, port int, caPEM []byte) (*unstructured.Unstructured, error) {
	objs, err := k8s.DecodeYAMLFile(filepath.Join(repo, RegistrationSource))
	if err != nil {
		return nil, err
	}
	var mwc *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "MutatingWebhookConfiguration" {
			if mwc != nil {
				return nil, fmt.Errorf("%s: more than one MutatingWebhookConfiguration", RegistrationSource)
			}
			mwc = o
		}
	}
	if mwc == nil {
		return nil, fmt.Errorf("%s: no MutatingWebhookConfiguration", RegistrationSource)
	}
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	if len(hooks) == 0 {
		return nil, fmt.Errorf("%s: no webhooks", RegistrationSource)
	}
	for i, h := range hooks {
		hm := h.(map[string]any)
		path, _, _ := unstructured.NestedString(hm, "clientConfig", "service", "path")
		if path == "" {
			path = "/"
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		hm["clientConfig"] = map[string]any{
			"url":      fmt.Sprintf("https://127.0.0.1:%d%s", port, path),
			"caBundle": base64.StdEncoding.EncodeToString(caPEM),
		}
		hooks[i] = hm
	}
	if err := unstructured.SetNestedSlice(mwc.Object, hooks, "webhooks"); err != nil {
		return nil, err
	}
	return mwc, nil
}

// Register creates (or replaces) the registration and waits for the API
// server's webhook informer to pick the change up.
func (cp *ControlPlane) Register(ctx context.Context, mwc *unstructured.Unstructured) error {
	api := cp.Dyn.Resource(k8s.GVRMWC)
	_ = api.Delete(ctx, mwc.GetName(), metav1.DeleteOptions{})
	obj := mwc.DeepCopy()
	if _, err := api.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("register webhook: %w", err)
	}
	settle()
	return nil
}

// Unregister removes the registration.
func (cp *ControlPlane) Unregister(ctx context.Context, name string) error {
	err := cp.Dyn.Resource(k8s.GVRMWC).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	settle()
	return nil
}

// settle gives the API server's admission-configuration informer time to see
// a registration change (it is asynchronous and has no readiness signal).
func settle() { time.Sleep(2 * time.Second) }
