package standin

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The per-replica headless Services the stock controller keeps for a
// Server in StatefulSet mode, reconciled before the StatefulSet
// (controllers/reconcilers/server/service_reconciler.go, 2.9.1 and 2.10.2;
// Deployment mode has none): one Service <server>-<i> per replica, labels
// seldon-server-replica=<server> and seldon-server-replica-name=<server>-<i>,
// clusterIP None, selector statefulset.kubernetes.io/pod-name=<server>-<i>,
// ports http 9000 -> "http", grpc 9500 -> "grpc", agent 9005; the controller
// reference to the Server (setControllerReferences). Services beyond the
// replica count (found by the replica label) are deleted first. A Service
// whose spec is not semantically equal to the desired one gets a full
// Update: since the API server defaults fields the desired spec leaves
// empty, that is every reconcile, and the API server makes it a no-op.

// The labels of a Server's Services and pods (selector and replica name).
const (
	ServerReplicaLabel     = "seldon-server-replica"
	ServerReplicaNameLabel = "seldon-server-replica-name"
)

func perReplicaServices(server *Server, replicas int) []*corev1.Service {
	var out []*corev1.Service
	for i := 0; i < replicas; i++ {
		name := fmt.Sprintf("%s-%d", server.Name, i)
		out = append(out, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Name:            name,
				Namespace:       server.Namespace,
				Labels:          map[string]string{ServerReplicaLabel: server.Name, ServerReplicaNameLabel: name},
				OwnerReferences: []metav1.OwnerReference{serverOwnerRef(server)},
			},
			Spec: corev1.ServiceSpec{
				ClusterIP: "None",
				Selector:  map[string]string{"statefulset.kubernetes.io/pod-name": name},
				Ports: []corev1.ServicePort{
					{Port: 9000, TargetPort: intstr.FromString("http"), Name: "http"},
					{Port: 9500, TargetPort: intstr.FromString("grpc"), Name: "grpc"},
					{Port: 9005, Name: "agent"},
				},
			},
		})
	}
	return out
}

// reconcileServices is ServerServiceReconciler.Reconcile.
func (si *StandIn) reconcileServices(ctx context.Context, server *Server, replicas int) error {
	kube, _, err := si.clients()
	if err != nil {
		return err
	}
	api := kube.CoreV1().Services(server.Namespace)
	existing, err := api.List(ctx, metav1.ListOptions{LabelSelector: ServerReplicaLabel + "=" + server.Name})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if existing != nil && len(existing.Items) > replicas {
		for _, svc := range perReplicaServices(server, len(existing.Items))[replicas:] {
			if err := api.Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
				return err
			}
		}
	}
	for _, svc := range perReplicaServices(server, replicas) {
		found, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := api.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				return err
			}
		case err != nil:
			return err
		case equality.Semantic.DeepEqual(svc.Spec, found.Spec):
		default:
			svc.ResourceVersion = found.ResourceVersion
			if _, err := api.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
	}
	return nil
}
