package standin

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Just enough of Seldon's mlops.seldon.io/v1alpha1 Server and ServerConfig
// for the stand-in controller (the fields the 2.9.1 controller reads when
// it builds a StatefulSet, and 2.10.2's additions for Deployments: the
// scaling bounds it validates and deploymentStrategy). Decoded from the API
// server's unstructured objects; unknown fields are ignored.

type Server struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServerSpec `json:"spec"`
}

type ServerSpec struct {
	ServerConfig      string          `json:"serverConfig"`
	ExtraCapabilities []string        `json:"extraCapabilities,omitempty"`
	Capabilities      []string        `json:"capabilities,omitempty"`
	PodSpec           *corev1.PodSpec `json:"podSpec,omitempty"`
	Replicas          *int32          `json:"replicas,omitempty"`
	MinReplicas       *int32          `json:"minReplicas,omitempty"`
	MaxReplicas       *int32          `json:"maxReplicas,omitempty"`
	DisableAutoUpdate bool            `json:"disableAutoUpdate,omitempty"`

	StatefulSetPersistentVolumeClaimRetentionPolicy *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy `json:"statefulSetPersistentVolumeClaimRetentionPolicy,omitempty"`

	// DeploymentStrategy is 2.10's (a value, as in Seldon's type: {} when
	// unset). The 2.9.1 Server CRD the suite installs does not declare it,
	// so the API server prunes it from stored Servers; see
	// StandIn.SetDeploymentStrategy.
	DeploymentStrategy appsv1.DeploymentStrategy `json:"deploymentStrategy,omitempty"`
}

type ServerConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServerConfigSpec `json:"spec"`
}

type ServerConfigSpec struct {
	PodSpec              corev1.PodSpec          `json:"podSpec"`
	VolumeClaimTemplates []PersistentVolumeClaim `json:"volumeClaimTemplates,omitempty"`
}

type PersistentVolumeClaim struct {
	Name string                           `json:"name"`
	Spec corev1.PersistentVolumeClaimSpec `json:"spec"`
}

func serverFrom(u *unstructured.Unstructured) (*Server, error) {
	var s Server
	return &s, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s)
}

func serverConfigFrom(u *unstructured.Unstructured) (*ServerConfig, error) {
	var s ServerConfig
	return &s, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s)
}
