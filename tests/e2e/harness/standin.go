package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// StandIn is a STAND-IN for the stock Seldon Core v2.9.1 controller, which
// cannot be built here (the Go module proxy refuses its modules). It writes
// a Server's StatefulSet the way the 2.9.1 controller does (shape:
// shared/docs/seldon-controller-behaviour.md section 5) -- including the
// defect: the ServerConfig is always read from the controller namespace,
// never from the Server's. It produces the INPUT the webhook sees; nothing
// it builds is ever used as an expected result.
type StandIn struct {
	cp                  *ControlPlane
	ControllerNamespace string
	Creates, Updates    atomic.Int64 // writes sent
}

const lastAppliedAnnotation = "seldon.io/last-applied"

// Desired builds the StatefulSet the stock controller would send for the
// Server, given the ServerConfig it looked up (the controller namespace's).
func Desired(server *Server, sc *ServerConfig) (*appsv1.StatefulSet, error) {
	podSpec, err := mergePodSpecs(&sc.Spec.PodSpec, server.Spec.PodSpec)
	if err != nil {
		return nil, err
	}
	updateCapabilities(podSpec, server.Spec.Capabilities, server.Spec.ExtraCapabilities)

	labels := mergeMeta(server.Labels, sc.Labels)
	labels["app.kubernetes.io/name"] = "seldon-server"
	annotations := mergeMeta(server.Annotations, sc.Annotations)

	tmplLabels := map[string]string{}
	for k, v := range labels {
		tmplLabels[k] = v
	}
	tmplLabels["seldon-server-name"] = server.Name
	tmplAnn := map[string]string{}
	for k, v := range annotations {
		tmplAnn[k] = v
	}

	replicas := int32(1)
	if server.Spec.Replicas != nil {
		replicas = *server.Spec.Replicas
	}
	var vcts []corev1.PersistentVolumeClaim
	for _, v := range sc.Spec.VolumeClaimTemplates {
		vcts = append(vcts, corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: v.Name}, Spec: v.Spec})
	}
	sts := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        server.Name,
			Namespace:   server.Namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: server.Name,
			Replicas:    &replicas,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"seldon-server-name": server.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Name: server.Name, Namespace: server.Namespace, Labels: tmplLabels, Annotations: tmplAnn},
				Spec:       *podSpec,
			},
			PodManagementPolicy:                  appsv1.ParallelPodManagement,
			VolumeClaimTemplates:                 vcts,
			PersistentVolumeClaimRetentionPolicy: server.Spec.StatefulSetPersistentVolumeClaimRetentionPolicy,
		},
	}
	// controller reference to the Server
	sts.OwnerReferences = []metav1.OwnerReference{{
		APIVersion:         "mlops.seldon.io/v1alpha1",
		Kind:               "Server",
		Name:               server.Name,
		UID:                server.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}}
	// what objectmatcher's annotator stores: the desired object without
	// this annotation
	raw, err := json.Marshal(sts)
	if err != nil {
		return nil, err
	}
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[lastAppliedAnnotation] = string(raw)
	return sts, nil
}

// mergeMeta: primary's keys, plus secondary's keys primary does not set,
// minus the Helm / kubectl bookkeeping keys.
func mergeMeta(primary, secondary map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range secondary {
		out[k] = v
	}
	for k, v := range primary {
		out[k] = v
	}
	for _, k := range []string{"meta.helm.sh/release-name", "meta.helm.sh/release-namespace", "kubectl.kubernetes.io/last-applied-configuration"} {
		delete(out, k)
	}
	return out
}

// Build reads the Server and -- like the stock controller -- the
// ServerConfig from the controller namespace, and returns the desired
// StatefulSet. A missing ServerConfig is the controller's not-found error.
func (s *StandIn) Build(ctx context.Context, ns, name string) (*appsv1.StatefulSet, error) {
	u, err := s.cp.Dyn.Resource(gvrServer).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	server, err := serverFrom(u)
	if err != nil {
		return nil, err
	}
	scu, err := s.cp.Dyn.Resource(gvrServerConfig).Namespace(s.ControllerNamespace).Get(ctx, server.Spec.ServerConfig, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("stand-in controller: ServerConfig %s/%s: %w", s.ControllerNamespace, server.Spec.ServerConfig, err)
	}
	sc, err := serverConfigFrom(scu)
	if err != nil {
		return nil, err
	}
	return Desired(server, sc)
}

// Reconcile sends the desired StatefulSet: Create when none is stored, else
// a full Update (as controller-runtime's client.Update does). It returns the
// object as sent and the object as stored.
func (s *StandIn) Reconcile(ctx context.Context, ns, name string) (sent, stored *appsv1.StatefulSet, err error) {
	sent, err = s.Build(ctx, ns, name)
	if err != nil {
		return nil, nil, err
	}
	stored, err = s.Write(ctx, sent)
	return sent, stored, err
}

// Write creates or fully updates the given desired object. A conflict
// (someone else wrote in between) is retried with the fresh
// resourceVersion, as the controller's requeue would.
func (s *StandIn) Write(ctx context.Context, desired *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	var out *appsv1.StatefulSet
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		out, err = s.write(ctx, desired)
		return err
	})
	return out, err
}

func (s *StandIn) write(ctx context.Context, desired *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	api := s.cp.Kube.AppsV1().StatefulSets(desired.Namespace)
	cur, err := api.Get(ctx, desired.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.Creates.Add(1)
		if verbose {
			step("stand-in controller: create StatefulSet %s/%s", desired.Namespace, desired.Name)
		}
		return api.Create(ctx, desired.DeepCopy(), metav1.CreateOptions{FieldManager: "manager"})
	}
	if err != nil {
		return nil, err
	}
	upd := desired.DeepCopy()
	upd.ResourceVersion = cur.ResourceVersion
	s.Updates.Add(1)
	if verbose {
		step("stand-in controller: full Update of StatefulSet %s/%s (resourceVersion %s)", desired.Namespace, desired.Name, cur.ResourceVersion)
	}
	return api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: "manager"})
}
