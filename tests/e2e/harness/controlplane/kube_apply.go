package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// Apply server-side-applies objects, resolving kinds through discovery.
func (cp *ControlPlane) Apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Kube.Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		body, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		var ri = cp.Dyn.Resource(m.Resource)
		force := true
		opts := metav1.PatchOptions{FieldManager: k8s.FieldManager, Force: &force}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			_, err = ri.Namespace(o.GetNamespace()).Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
		} else {
			_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
		}
		if err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// InstallCRDs applies the Seldon CRDs and waits until they are served.
func (cp *ControlPlane) InstallCRDs(ctx context.Context, path string) error {
	objs, err := k8s.DecodeYAMLFile(path)
	if err != nil {
		return fmt.Errorf("read CRDs %s: %w", path, err)
	}
	util.Step("installing %d Seldon CRDs from %s", len(objs), path)
	if err := cp.ApplyCRDs(ctx, objs); err != nil {
		return err
	}
	// a Server list proves the resources are served through discovery too
	return util.Poll(30*time.Second, func() error {
		_, err := cp.Dyn.Resource(k8s.GVRServer).Namespace("default").List(ctx, metav1.ListOptions{})
		return err
	})
}

// ApplyCRDs applies CustomResourceDefinitions and waits until each is
// Established (the one wait the Seldon, cert-manager and Kyverno installs
// share).
func (cp *ControlPlane) ApplyCRDs(ctx context.Context, crds []*unstructured.Unstructured) error {
	if err := cp.Apply(ctx, crds...); err != nil {
		return err
	}
	for _, o := range crds {
		name := o.GetName()
		err := util.Poll(60*time.Second, func() error {
			crd, err := cp.Dyn.Resource(k8s.GVRCRD).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				cm, _ := c.(map[string]any)
				if cm["type"] == "Established" && cm["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not established", name)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// EnsureNamespace creates a namespace and the ServiceAccount the Seldon
// ServerConfigs name (seldon-server), so that Pods can be admitted.
func (cp *ControlPlane) EnsureNamespace(ctx context.Context, name string) error {
	_, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = cp.Kube.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "seldon-server"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
