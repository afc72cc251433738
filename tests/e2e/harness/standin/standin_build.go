package standin

import (
	"github.com/banzaicloud/k8s-objectmatcher/patch"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The objects the STAND-IN for the stock Seldon controller sends, built the
// way the operator module's own code builds them (read at the tags
// operator/v2.9.1 and operator/v2.10.2):
//
//   - controllers/reconcilers/server/statefulset_reconciler.go toStatefulSet
//     (2.9.1; 2.10.2 builds the same StatefulSet);
//   - controllers/reconcilers/server/deployment_reconciler.go
//     toDeploymentTest (2.10.2, --use-deployments-for-servers);
//   - NewServerReconciler / NewServerReconcilerWithDeployment: the
//     seldon.io/last-applied annotation is written by objectmatcher's
//     annotator (zip + base64 of the object without it) right after the
//     build, and the controller reference to the Server is set only later
//     (server_controller.go setControllerReferences), so a create's
//     annotation holds no ownerReferences. No TypeMeta is set.
//
// Calibrated against the real controller's requests in
// ../shared/seldon-oracle/controller-trace (scenario standin-calibration).

const lastAppliedAnnotation = "seldon.io/last-applied"

// lastApplied is the stock controller's annotator
// (patch.NewAnnotator(constants.LastAppliedConfig)).
var lastApplied = patch.NewAnnotator(lastAppliedAnnotation)

// serverOwnerRef is what controllerutil.SetControllerReference gives an
// object owned by the Server.
func serverOwnerRef(server *Server) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         "mlops.seldon.io/v1alpha1",
		Kind:               "Server",
		Name:               server.Name,
		UID:                server.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// workloadMeta is what both builders share: the merged pod spec with the
// capabilities applied, the object's labels and annotations, the pod
// template's labels and annotations, and the replicas (Server.Default: 1
// when unset).
type workloadMeta struct {
	podSpec                  *corev1.PodSpec
	labels, annotations      map[string]string
	tmplLabels, tmplAnnotate map[string]string
	replicas                 int32
}

func buildMeta(server *Server, sc *ServerConfig) (*workloadMeta, error) {
	podSpec, err := mergePodSpecs(&sc.Spec.PodSpec, server.Spec.PodSpec)
	if err != nil {
		return nil, err
	}
	updateCapabilities(podSpec, server.Spec.Capabilities, server.Spec.ExtraCapabilities)
	// utils.MergeMaps(child, parent): the Server's keys win; the fixed keys
	// win over both
	labels := mergeMeta(server.Labels, sc.Labels)
	labels["app.kubernetes.io/name"] = "seldon-server"
	annotations := mergeMeta(server.Annotations, sc.Annotations)
	tmplLabels := map[string]string{}
	for k, v := range labels {
		tmplLabels[k] = v
	}
	tmplLabels["seldon-server-name"] = server.Name
	// common.CopyMap: taken before the last-applied annotation is added
	tmplAnn := map[string]string{}
	for k, v := range annotations {
		tmplAnn[k] = v
	}
	replicas := int32(1)
	if server.Spec.Replicas != nil {
		replicas = *server.Spec.Replicas
	}
	return &workloadMeta{podSpec: podSpec, labels: labels, annotations: annotations,
		tmplLabels: tmplLabels, tmplAnnotate: tmplAnn, replicas: replicas}, nil
}

// Desired builds the StatefulSet the stock controller creates for the
// Server, given the ServerConfig it looked up (the controller namespace's).
func Desired(server *Server, sc *ServerConfig) (*appsv1.StatefulSet, error) {
	m, err := buildMeta(server, sc)
	if err != nil {
		return nil, err
	}
	var vcts []corev1.PersistentVolumeClaim
	for _, v := range sc.Spec.VolumeClaimTemplates {
		vcts = append(vcts, corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: v.Name}, Spec: v.Spec})
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:        server.Name,
			Namespace:   server.Namespace,
			Labels:      m.labels,
			Annotations: m.annotations,
		},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: server.Name,
			Replicas:    &m.replicas,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"seldon-server-name": server.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Name: server.Name, Namespace: server.Namespace, Labels: m.tmplLabels, Annotations: m.tmplAnnotate},
				Spec:       *m.podSpec,
			},
			PodManagementPolicy:                  appsv1.ParallelPodManagement,
			VolumeClaimTemplates:                 vcts,
			PersistentVolumeClaimRetentionPolicy: server.Spec.StatefulSetPersistentVolumeClaimRetentionPolicy,
		},
	}
	if err := lastApplied.SetLastAppliedAnnotation(sts); err != nil {
		return nil, err
	}
	sts.OwnerReferences = []metav1.OwnerReference{serverOwnerRef(server)}
	return sts, nil
}

// DesiredDeployment builds the Deployment Seldon 2.10.2 creates with
// --use-deployments-for-servers: the same metadata, selector, template and
// pod spec as the StatefulSet; spec.strategy is the Server's
// deploymentStrategy ({} when unset); no serviceName, podManagementPolicy,
// claim retention or claim templates (the ServerConfig's are ignored).
func DesiredDeployment(server *Server, sc *ServerConfig) (*appsv1.Deployment, error) {
	m, err := buildMeta(server, sc)
	if err != nil {
		return nil, err
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:        server.Name,
			Namespace:   server.Namespace,
			Labels:      m.labels,
			Annotations: m.annotations,
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &m.replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"seldon-server-name": server.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Name: server.Name, Namespace: server.Namespace, Labels: m.tmplLabels, Annotations: m.tmplAnnotate},
				Spec:       *m.podSpec,
			},
			Strategy: server.Spec.DeploymentStrategy,
		},
	}
	if err := lastApplied.SetLastAppliedAnnotation(d); err != nil {
		return nil, err
	}
	d.OwnerReferences = []metav1.OwnerReference{serverOwnerRef(server)}
	return d, nil
}

// mergeMeta: primary's keys, plus secondary's keys primary does not set,
// minus the Helm / kubectl bookkeeping keys (utils.MergeMaps).
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
