package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The release of deploy-helm-upgrade: its own name and namespace, so that
// nothing collides with the harness's registration and shipped RBAC
// (release serverconfig-webhook in serverconfig-webhook-system).
const (
	upRelease  = "scw-upgrade"
	upNS       = "scw-upgrade-system"
	upFullname = upRelease + "-serverconfig-webhook"
	upNode     = "e2e-upgrade-node"
	// the harness plays the kubelet: a pod turns Ready this long after it
	// is bound, so that each rollout step is a distinct state
	upReadyDelay = 700 * time.Millisecond
)

// scenarioDeployHelmUpgrade: the built helm installs the chart of the last
// release (tests/deploy/previous-chart) with default values, then `helm
// upgrade`s it to the repository's chart, with a pod-template change so that
// the Deployment rolls. kube-controller-manager runs the Deployment,
// ReplicaSet, disruption and EndpointSlice controllers; the harness plays
// the scheduler and kubelet (binds each pod to a Node object, then reports
// it Running and Ready with an IP). Checked: the upgrade is accepted (no
// immutable field changed), nothing the release labelled is left that the
// new manifest lacks, the Deployment, Service (clusterIP) and selector are
// kept, the Service's EndpointSlices list exactly the new pods, the
// registration names a Service, port and Certificate that exist, and at
// every pod change the API server reported during the rollout, the Ready
// pods behind the Service stayed >= replicas (maxUnavailable 0) >= the PDB's
// minAvailable. Not proven: real containers (no kubelet runs them), the
// serving Secret (no cert-manager process here; deploy-cert-manager issues
// it), traffic during the rollout.
func scenarioDeployHelmUpgrade(ctx context.Context, s *Suite) error {
	const sc = "deploy-helm-upgrade"
	if err := s.installCertManagerCRDs(ctx); !s.r.Check(checkName(sc, "cert-manager-crds"), err == nil, "cert-manager's CRDs (the chart's Issuers and Certificates) installed: %v", err) {
		return nil
	}
	// a server outside the chart's kubeVersion: helm must refuse the new chart
	if out, err := s.CP.Helm(s.Cfg, "template", upRelease, controlplane.ChartDir, "--kube-version", s.CP.GitVersion); err != nil {
		refused := strings.Contains(err.Error(), "incompatible with Kubernetes")
		s.r.Check(checkName(sc, "kube-version-outside-range-refused"), refused,
			"Kubernetes %s is outside the chart's kubeVersion, so the upgrade is not exercised here; helm template says: %v %s", s.CP.GitVersion, err, out)
		return nil
	}

	// the Node the pods are bound to (the EndpointSlice controller skips
	// pods whose Node does not exist)
	_, err := s.CP.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: upNode}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Node %s: %w", upNode, err)
	}
	kl := &fakeKubelet{s: s, ns: upNS, node: upNode, pods: map[string]*corev1.Pod{}, handled: map[string]bool{}, stopping: map[string]bool{}}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	klDone := make(chan error, 1)
	go func() { klDone <- kl.run(watchCtx) }()
	// uninstall while the stand-in kubelet still confirms pod deletions
	defer func() {
		s.cleanupUpgrade(sc)
		stopWatch()
		if err := <-klDone; err != nil {
			s.r.Check(checkName(sc, "harness-kubelet"), false, "the harness's kubelet stand-in failed: %v", err)
		}
	}()

	// the schema refuses a typo against a real cluster, before anything is written
	out, err := s.CP.Helm(s.Cfg, "install", upRelease, controlplane.ChartDir, "--namespace", upNS, "--create-namespace", "--set", "replicaCont=3")
	_, statusErr := s.CP.Helm(s.Cfg, "status", upRelease, "--namespace", upNS)
	s.r.Check(checkName(sc, "install-refuses-typo"), err != nil && strings.Contains(err.Error(), "additional properties 'replicaCont' not allowed") && statusErr != nil,
		"helm install --set replicaCont=3: %v %s; no release recorded: %v", err, firstLines(out, 2), statusErr != nil)

	// 1. the previous chart, as a user installed it
	out, err = s.CP.Helm(s.Cfg, "install", upRelease, controlplane.PreviousChartDir, "--namespace", upNS, "--create-namespace")
	if !s.r.Check(checkName(sc, "install-previous-chart"), err == nil, "helm install %s %s: %v %s", upRelease, controlplane.PreviousChartDir, err, firstLines(out, 3)) {
		return nil
	}
	before, err := s.waitRolledOut(ctx, 90*time.Second)
	if !s.r.Check(checkName(sc, "previous-chart-available"), err == nil, "Deployment %s/%s: %v", upNS, upFullname, err) {
		return nil
	}
	svcBefore, err := s.CP.Kube.CoreV1().Services(upNS).Get(ctx, upFullname, metav1.GetOptions{})
	if err != nil {
		return err
	}
	oldObjs, err := s.CP.HelmManifest(s.Cfg, upRelease, upNS, 1)
	if err != nil {
		return err
	}

	// 2. helm upgrade to the repository's chart; the pod annotation makes the
	// Deployment roll, as a new image tag would
	valuesFile := filepath.Join(s.CP.Dir, "upgrade-values.yaml")
	values := "podAnnotations:\n  e2e.test/rollout: upgrade\n"
	if err := os.WriteFile(valuesFile, []byte(values), 0o644); err != nil {
		return err
	}
	kl.startRecording(before.Spec.Selector)
	out, err = s.CP.Helm(s.Cfg, "upgrade", upRelease, controlplane.ChartDir, "--namespace", upNS, "-f", valuesFile)
	immutable := err != nil && strings.Contains(err.Error(), "immutable")
	if !s.r.Check(checkName(sc, "upgrade-accepted"), err == nil, "helm upgrade %s %s (no immutable field changed: %v): %v %s", upRelease, controlplane.ChartDir, !immutable, err, firstLines(out, 3)) {
		return nil
	}
	after, err := s.waitRolledOut(ctx, 120*time.Second)
	rec := kl.stopRecording()
	if !s.r.Check(checkName(sc, "rollout-completes"), err == nil && after.Status.ObservedGeneration > before.Status.ObservedGeneration,
		"Deployment generation %d -> %d, %d/%d updated and available: %v", before.Generation, deploymentGen(after), updated(after), replicas(after), err) {
		return nil
	}
	newObjs, err := s.CP.HelmManifest(s.Cfg, upRelease, upNS, 2)
	if err != nil {
		return err
	}
	rendered, err := s.CP.Helm(s.Cfg, "template", upRelease, controlplane.ChartDir, "--namespace", upNS, "-f", valuesFile)
	if err != nil {
		return err
	}
	s.checkManifestIsRender(sc, newObjs, rendered)
	s.checkNothingOrphaned(ctx, sc, oldObjs, newObjs)
	s.checkKeptIdentity(ctx, sc, before, after, svcBefore)
	s.checkEndpointsAreNewPods(ctx, sc, after)
	s.checkRegistrationTargets(ctx, sc, after)
	s.checkRolloutKeptPDB(ctx, sc, after, rec)
	s.checkSelectorChangeRefused(ctx, sc, valuesFile)

	// an upgrade with a typo is refused and changes nothing
	out, err = s.CP.Helm(s.Cfg, "upgrade", upRelease, controlplane.ChartDir, "--namespace", upNS, "-f", valuesFile, "--set", "sync.leaseDuraton=30s")
	hist, herr := s.CP.Helm(s.Cfg, "history", upRelease, "--namespace", upNS, "--max", "1", "-o", "json")
	s.r.Check(checkName(sc, "upgrade-refuses-typo"), err != nil && strings.Contains(err.Error(), "additional properties 'leaseDuraton' not allowed") && herr == nil && strings.Contains(string(hist), `"revision":2`),
		"helm upgrade --set sync.leaseDuraton=30s: %v %s; latest revision still 2: %s %v", err, firstLines(out, 2), strings.TrimSpace(string(hist)), herr)
	return nil
}

// waitRolledOut waits until the release's Deployment has observed its
// generation and every replica is updated, ready and available.
func (s *Suite) waitRolledOut(ctx context.Context, timeout time.Duration) (*appsv1.Deployment, error) {
	var d *appsv1.Deployment
	err := util.Poll(timeout, func() error {
		var err error
		d, err = s.CP.Kube.AppsV1().Deployments(upNS).Get(ctx, upFullname, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := replicas(d)
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.AvailableReplicas != want || st.Replicas != want || st.ReadyReplicas != want {
			return fmt.Errorf("generation %d observed %d, replicas %d updated %d ready %d available %d (want %d)",
				d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, want)
		}
		return nil
	})
	return d, err
}

func replicas(d *appsv1.Deployment) int32 {
	if d == nil || d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func updated(d *appsv1.Deployment) int32 {
	if d == nil {
		return 0
	}
	return d.Status.UpdatedReplicas
}

func deploymentGen(d *appsv1.Deployment) int64 {
	if d == nil {
		return 0
	}
	return d.Generation
}

func firstLines(b []byte, n int) string {
	l := strings.SplitN(strings.TrimSpace(string(b)), "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, " | ")
}

// objSet is "Kind namespace/name" of each object (the release namespace for
// a namespaced object helm rendered without one).
func objSet(objs []*unstructured.Unstructured, clusterScoped map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, o := range objs {
		ns := o.GetNamespace()
		if ns == "" && !clusterScoped[o.GetKind()] {
			ns = upNS
		}
		out[o.GetKind()+" "+ns+"/"+o.GetName()] = true
	}
	return out
}

var upClusterScoped = map[string]bool{
	"ClusterRole": true, "ClusterRoleBinding": true, "MutatingWebhookConfiguration": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true, "Namespace": true,
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkManifestIsRender: the release's new manifest is `helm template` of
// the repository's chart with the same values (the upgrade applied the new
// render, not something else).
func (s *Suite) checkManifestIsRender(sc string, manifest []*unstructured.Unstructured, rendered []byte) {
	objs, err := decodeRender(rendered)
	same := err == nil && len(objs) == len(manifest)
	if same {
		want := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			want[controlplane.ObjKey(o)] = o
		}
		for _, o := range manifest {
			w, ok := want[controlplane.ObjKey(o)]
			if !ok || !controlplane.SameObject(w.Object, o.Object) {
				same = false
			}
		}
	}
	s.r.Check(checkName(sc, "manifest-is-new-render"), same, "revision 2 holds %d objects, helm template of %s %d %v", len(manifest), controlplane.ChartDir, len(objs), err)
}

// checkNothingOrphaned: every object of a kind either render holds that
// carries the release's instance label and is not owned by another object
// (ReplicaSets, Pods, EndpointSlices are) is in the new manifest, and every
// object of the new manifest exists.
func (s *Suite) checkNothingOrphaned(ctx context.Context, sc string, oldObjs, newObjs []*unstructured.Unstructured) {
	kinds := map[schema.GroupVersionKind]bool{}
	for _, o := range append(append([]*unstructured.Unstructured{}, oldObjs...), newObjs...) {
		kinds[o.GroupVersionKind()] = true
	}
	var gvks []schema.GroupVersionKind
	for k := range kinds {
		gvks = append(gvks, k)
	}
	live, err := s.CP.ListLabelled(ctx, gvks, "app.kubernetes.io/instance="+upRelease)
	if err != nil {
		s.r.Check(checkName(sc, "nothing-orphaned"), false, "list the release's objects: %v", err)
		return
	}
	var unowned []*unstructured.Unstructured
	for _, o := range live {
		if len(o.GetOwnerReferences()) == 0 {
			unowned = append(unowned, o)
		}
	}
	liveSet, want, old := objSet(unowned, upClusterScoped), objSet(newObjs, upClusterScoped), objSet(oldObjs, upClusterScoped)
	var orphans, missing, dropped []string
	for _, k := range sortedSet(liveSet) {
		if !want[k] {
			orphans = append(orphans, k)
		}
	}
	for _, k := range sortedSet(want) {
		if !liveSet[k] {
			missing = append(missing, k)
		}
	}
	for _, k := range sortedSet(old) {
		if !want[k] {
			dropped = append(dropped, k)
		}
	}
	s.r.Check(checkName(sc, "nothing-orphaned"), len(orphans) == 0 && len(missing) == 0,
		"%d labelled objects of %d kinds live, %d in the new manifest (%d in the previous; dropped by the upgrade: %v); left over: %v; missing: %v",
		len(liveSet), len(gvks), len(want), len(old), dropped, orphans, missing)
}

// checkKeptIdentity: the upgrade patched the Deployment and Service in
// place (same uid), kept the Deployment's selector (immutable) and the
// Service's clusterIP (immutable).
func (s *Suite) checkKeptIdentity(ctx context.Context, sc string, before, after *appsv1.Deployment, svcBefore *corev1.Service) {
	svc, err := s.CP.Kube.CoreV1().Services(upNS).Get(ctx, upFullname, metav1.GetOptions{})
	if err != nil {
		s.r.Check(checkName(sc, "immutable-fields-kept"), false, "get Service: %v", err)
		return
	}
	selBefore, _ := metav1.LabelSelectorAsMap(before.Spec.Selector)
	selAfter, _ := metav1.LabelSelectorAsMap(after.Spec.Selector)
	ok := before.UID == after.UID && svc.UID == svcBefore.UID && svc.Spec.ClusterIP == svcBefore.Spec.ClusterIP &&
		labels.Equals(selBefore, selAfter) && svc.Spec.ClusterIP != ""
	s.r.Check(checkName(sc, "immutable-fields-kept"), ok,
		"Deployment uid kept %v, selector %v -> %v; Service uid kept %v, clusterIP %s -> %s",
		before.UID == after.UID, selBefore, selAfter, svc.UID == svcBefore.UID, svcBefore.Spec.ClusterIP, svc.Spec.ClusterIP)
}

// checkEndpointsAreNewPods: the Service's selector matches the new pods'
// labels, and the EndpointSlice controller lists exactly their IPs, ready.
func (s *Suite) checkEndpointsAreNewPods(ctx context.Context, sc string, d *appsv1.Deployment) {
	var detail string
	err := util.Poll(30*time.Second, func() error {
		svc, err := s.CP.Kube.CoreV1().Services(upNS).Get(ctx, upFullname, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pods, err := s.CP.Kube.CoreV1().Pods(upNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		newHash := d.Spec.Template.Labels // the new template's labels (pod-template-hash is added by the controller)
		var newIPs, selected []string
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if sel.Matches(labels.Set(p.Labels)) {
				selected = append(selected, p.Name)
			}
			if p.Annotations["e2e.test/rollout"] == "upgrade" && labels.SelectorFromSet(newHash).Matches(labels.Set(p.Labels)) && p.Status.PodIP != "" {
				newIPs = append(newIPs, p.Status.PodIP)
			}
		}
		slices, err := s.CP.Kube.DiscoveryV1().EndpointSlices(upNS).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + upFullname})
		if err != nil {
			return err
		}
		var ready []string
		for _, sl := range slices.Items {
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready = append(ready, e.Addresses...)
				}
			}
		}
		sort.Strings(newIPs)
		sort.Strings(ready)
		detail = fmt.Sprintf("Service selector %v selects pods %v; new pods' IPs %v; ready endpoints %v", svc.Spec.Selector, selected, newIPs, ready)
		if len(newIPs) != int(replicas(d)) || strings.Join(newIPs, ",") != strings.Join(ready, ",") || len(selected) != len(newIPs) {
			return fmt.Errorf("%s", detail)
		}
		return nil
	})
	s.r.Check(checkName(sc, "service-routes-to-new-pods"), err == nil, "%s", detail)
}

// checkRegistrationTargets: the MutatingWebhookConfiguration names a Service
// and port that exist and reach the container's https port, and a
// Certificate (inject-ca-from) whose Secret is the one the pods mount.
func (s *Suite) checkRegistrationTargets(ctx context.Context, sc string, d *appsv1.Deployment) {
	var p []string
	mwc, err := s.CP.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, upFullname, metav1.GetOptions{})
	if err != nil {
		s.r.Check(checkName(sc, "registration-targets-exist"), false, "get MutatingWebhookConfiguration %s: %v", upFullname, err)
		return
	}
	containerPorts := map[string]bool{}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			containerPorts[cp.Name] = true
		}
	}
	for _, h := range mwc.Webhooks {
		ref := h.ClientConfig.Service
		if ref == nil {
			p = append(p, h.Name+": no service clientConfig")
			continue
		}
		svc, err := s.CP.Kube.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			p = append(p, fmt.Sprintf("%s: Service %s/%s: %v", h.Name, ref.Namespace, ref.Name, err))
			continue
		}
		found := false
		for _, sp := range svc.Spec.Ports {
			if ref.Port != nil && sp.Port == *ref.Port && containerPorts[sp.TargetPort.String()] {
				found = true
			}
		}
		if !found {
			p = append(p, fmt.Sprintf("%s: Service %s has no port %v targeting a container port %v", h.Name, svc.Name, ref.Port, containerPorts))
		}
	}
	inject := mwc.Annotations[controlplane.InjectCAAnnKey]
	nsName := strings.SplitN(inject, "/", 2)
	secretMounted := ""
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Name == "tls" {
			secretMounted = v.Secret.SecretName
		}
	}
	if len(nsName) != 2 {
		p = append(p, fmt.Sprintf("annotation %s=%q", controlplane.InjectCAAnnKey, inject))
	} else if cert, err := s.CP.Dyn.Resource(gvrCertificate).Namespace(nsName[0]).Get(ctx, nsName[1], metav1.GetOptions{}); err != nil {
		p = append(p, fmt.Sprintf("Certificate %s: %v", inject, err))
	} else if sec, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); sec != secretMounted || sec == "" {
		p = append(p, fmt.Sprintf("Certificate %s writes Secret %q, the pods mount %q", inject, sec, secretMounted))
	}
	s.r.Check(checkName(sc, "registration-targets-exist"), len(p) == 0,
		"%d webhooks -> Service %s/%s; %s=%s -> Secret %s mounted by the pods%s",
		len(mwc.Webhooks), upNS, upFullname, controlplane.InjectCAAnnKey, inject, secretMounted, failures(p))
}

// checkRolloutKeptPDB: what the objects guarantee (maxUnavailable 0, so the
// Deployment controller never lets Ready pods drop below replicas, which
// must be >= the PDB's minAvailable) and what the API server reported: at
// every pod event of the rollout, the Ready pods the Service selects.
func (s *Suite) checkRolloutKeptPDB(ctx context.Context, sc string, d *appsv1.Deployment, rec rolloutRecord) {
	pdb, err := s.CP.Kube.PolicyV1().PodDisruptionBudgets(upNS).Get(ctx, upFullname, metav1.GetOptions{})
	if err != nil {
		s.r.Check(checkName(sc, "rollout-keeps-pdb"), false, "get PodDisruptionBudget: %v", err)
		return
	}
	minAvail := 0
	if pdb.Spec.MinAvailable != nil {
		minAvail = pdb.Spec.MinAvailable.IntValue()
	}
	want := int(replicas(d))
	maxUnavail, maxSurge := -1, -1
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil && ru.MaxSurge != nil {
		maxUnavail, maxSurge = ru.MaxUnavailable.IntValue(), ru.MaxSurge.IntValue()
	}
	static := maxUnavail == 0 && want-maxUnavail >= minAvail && minAvail >= 1 && sameSelector(pdb, d)
	s.r.Check(checkName(sc, "strategy-respects-pdb"), static,
		"replicas %d, maxUnavailable %d, maxSurge %d: the Deployment controller keeps >= %d Ready; PDB minAvailable %d on the same selector %v",
		want, maxUnavail, maxSurge, want-maxUnavail, minAvail, sameSelector(pdb, d))
	s.r.Check(checkName(sc, "rollout-keeps-pdb"), rec.events > 0 && rec.minReady >= want && rec.minReady >= minAvail && rec.maxPods <= want+maxSurge && rec.pdbBelow == 0,
		"%d pod events during the upgrade: Ready pods behind the Service min %d max %d (PDB minAvailable %d), pods not terminating at most %d (replicas + maxSurge = %d; %d with terminating ones); PDB status seen %d times, currentHealthy < desiredHealthy %d times (min healthy %d)",
		rec.events, rec.minReady, rec.maxReady, minAvail, rec.maxPods, want+maxSurge, rec.maxWithTerminating, rec.pdbSeen, rec.pdbBelow, rec.pdbMinHealthy)
}

// checkSelectorChangeRefused is the negative control of upgrade-accepted: a
// chart whose selector labels changed (nameOverride, same object names) would
// be refused by the API server, so an upgrade that changed them fails there.
func (s *Suite) checkSelectorChangeRefused(ctx context.Context, sc, valuesFile string) {
	out, err := s.CP.Helm(s.Cfg, "template", upRelease, controlplane.ChartDir, "--namespace", upNS, "-f", valuesFile,
		"--set", "nameOverride=renamed", "--set", "fullnameOverride="+upFullname)
	var d *unstructured.Unstructured
	if err == nil {
		objs, derr := k8s.DecodeYAML(out)
		err = derr
		d = controlplane.FindObj(objs, "Deployment", upFullname)
	}
	if err != nil || d == nil {
		s.r.Check(checkName(sc, "selector-change-refused"), false, "render with nameOverride: %v (Deployment found: %v)", err, d != nil)
		return
	}
	_, err = s.CP.ApplyOne(ctx, d, true)
	s.r.Check(checkName(sc, "selector-change-refused"), err != nil && strings.Contains(err.Error(), "immutable"),
		"server-side apply (dry run) of the Deployment with selector app.kubernetes.io/name=renamed: %v", err)
}

func sameSelector(pdb *policyv1.PodDisruptionBudget, d *appsv1.Deployment) bool {
	a, err1 := metav1.LabelSelectorAsMap(pdb.Spec.Selector)
	b, err2 := metav1.LabelSelectorAsMap(d.Spec.Selector)
	return err1 == nil && err2 == nil && labels.Equals(a, b)
}

// cleanupUpgrade uninstalls the release (its registration fails closed
// with no webhook behind it) and checks that nothing labelled is left.
func (s *Suite) cleanupUpgrade(sc string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.CP.Helm(s.Cfg, "uninstall", upRelease, "--namespace", upNS, "--wait", "--timeout", "60s")
	s.r.Check(checkName(sc, "uninstall"), err == nil, "helm uninstall %s: %v %s", upRelease, err, firstLines(out, 2))
	// the garbage collector deletes the ReplicaSets' pods; the stand-in
	// kubelet (still running) confirms their deletion
	_ = util.Poll(60*time.Second, func() error {
		pods, err := s.CP.Kube.CoreV1().Pods(upNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
	_ = s.CP.Kube.CoreV1().Namespaces().Delete(ctx, upNS, metav1.DeleteOptions{})
	_ = s.CP.Kube.CoreV1().Nodes().Delete(ctx, upNode, metav1.DeleteOptions{})
	for _, name := range []string{upFullname} {
		if _, err := s.CP.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			s.r.Check(checkName(sc, "uninstall-removes-registration"), false, "MutatingWebhookConfiguration %s still there (%v)", name, err)
			return
		}
	}
	s.r.Check(checkName(sc, "uninstall-removes-registration"), true, "MutatingWebhookConfiguration %s gone", upFullname)
}

func decodeRender(b []byte) ([]*unstructured.Unstructured, error) {
	return k8s.DecodeYAML(b)
}

// rolloutRecord is what the pod and PDB watches saw while recording.
type rolloutRecord struct {
	events, minReady, maxReady, maxPods int
	maxWithTerminating                  int
	pdbSeen, pdbBelow, pdbMinHealthy    int
}

// fakeKubelet plays the scheduler and the kubelet for the release's pods:
// binds each new pod to the Node object, and upReadyDelay later reports it
// Running and Ready with a pod IP. While recording, it also keeps, after
// each pod event, the count of Ready pods the selector matches.
type fakeKubelet struct {
	s        *Suite
	ns, node string

	mu        sync.Mutex
	pods      map[string]*corev1.Pod
	recording bool
	selector  labels.Selector
	rec       rolloutRecord
	nextIP    int
	handled   map[string]bool // bound and started
	stopping  map[string]bool // final delete sent
}

func (k *fakeKubelet) startRecording(sel *metav1.LabelSelector) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		s = labels.Nothing()
	}
	k.selector = s
	k.rec = rolloutRecord{minReady: 1 << 30, pdbMinHealthy: 1 << 30}
	k.recording = true
	k.observeLocked()
}

func (k *fakeKubelet) stopRecording() rolloutRecord {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.recording = false
	return k.rec
}

// observeLocked records the current pod set (k.mu held).
func (k *fakeKubelet) observeLocked() {
	if !k.recording {
		return
	}
	ready, active, all := 0, 0, 0
	for _, p := range k.pods {
		all++
		if p.DeletionTimestamp == nil {
			active++ // what maxSurge bounds: terminating pods are not counted
		}
		if k.selector.Matches(labels.Set(p.Labels)) && podReady(p) {
			ready++
		}
	}
	r := &k.rec
	r.events++
	r.minReady = min(r.minReady, ready)
	r.maxReady = max(r.maxReady, ready)
	r.maxPods = max(r.maxPods, active)
	r.maxWithTerminating = max(r.maxWithTerminating, all)
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// run watches the namespace's pods (and the PDB) until ctx ends.
func (k *fakeKubelet) run(ctx context.Context) error {
	kube := k.s.CP.Kube
	pw, err := kube.CoreV1().Pods(k.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	defer pw.Stop()
	dw, err := kube.PolicyV1().PodDisruptionBudgets(k.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	defer dw.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-pw.ResultChan():
			if !ok {
				return fmt.Errorf("pod watch closed")
			}
			k.onPod(ctx, ev)
		case ev, ok := <-dw.ResultChan():
			if !ok {
				return fmt.Errorf("PDB watch closed")
			}
			k.onPDB(ev)
		}
	}
}

func (k *fakeKubelet) onPDB(ev watch.Event) {
	pdb, ok := ev.Object.(*policyv1.PodDisruptionBudget)
	if !ok || pdb.Status.ObservedGeneration == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.recording {
		return
	}
	r := &k.rec
	r.pdbSeen++
	r.pdbMinHealthy = min(r.pdbMinHealthy, int(pdb.Status.CurrentHealthy))
	if pdb.Status.CurrentHealthy < pdb.Status.DesiredHealthy {
		r.pdbBelow++
	}
}

func (k *fakeKubelet) onPod(ctx context.Context, ev watch.Event) {
	p, ok := ev.Object.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	if ev.Type == watch.Deleted {
		delete(k.pods, p.Name)
	} else {
		k.pods[p.Name] = p
	}
	k.observeLocked()
	start := ev.Type != watch.Deleted && p.DeletionTimestamp == nil && !k.handled[p.Name]
	if start {
		k.handled[p.Name] = true
		k.nextIP++
	}
	ip := fmt.Sprintf("10.244.0.%d", 10+k.nextIP)
	stop := ev.Type != watch.Deleted && p.DeletionTimestamp != nil && !k.stopping[p.Name]
	if stop {
		k.stopping[p.Name] = true
	}
	k.mu.Unlock()
	if start {
		go k.startPod(ctx, p.Name, ip)
	}
	if stop {
		go k.stopPod(ctx, p)
	}
}

// stopPod is the kubelet's last step once the containers stopped: the
// final delete (grace period 0) of a pod marked for deletion.
func (k *fakeKubelet) stopPod(ctx context.Context, p *corev1.Pod) {
	zero := int64(0)
	uid := p.UID
	err := k.s.CP.Kube.CoreV1().Pods(k.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		util.Step("fake kubelet: delete %s: %v", p.Name, err)
	}
}

// startPod binds the pod and, upReadyDelay later, reports it Ready.
func (k *fakeKubelet) startPod(ctx context.Context, name, ip string) {
	pods := k.s.CP.Kube.CoreV1().Pods(k.ns)
	err := pods.Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.ns},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.node},
	}, metav1.CreateOptions{})
	if err != nil {
		util.Step("fake kubelet: bind %s: %v", name, err)
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(upReadyDelay):
	}
	_ = util.Poll(10*time.Second, func() error {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		now := metav1.Now()
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		p.Status.HostIP = "10.0.0.1"
		p.Status.HostIPs = []corev1.HostIP{{IP: "10.0.0.1"}}
		p.Status.StartTime = &now
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		var cs []corev1.ContainerStatus
		for _, c := range p.Spec.Containers {
			started := true
			cs = append(cs, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: "e2e://" + c.Image, Ready: true, Started: &started,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
		p.Status.ContainerStatuses = cs
		_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}
