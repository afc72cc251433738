package scenarios

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/standin"
	"serverconfig-webhook/e2e/harness/util"
)

// Seldon 2.10.2's Deployment mode (--use-deployments-for-servers), with
// the stand-in controller in that mode (Mode2102Deployment) and the
// webhook as shipped (its registration covers Deployments; its sync loop
// runs a workload controller per kind). Shared by scenario_deployments*.go.
//
// The team's ServerConfig for Deployments is the released mlserver one
// with the team's images, an emptyDir volume mlserver-models (what the
// StatefulSet's claim template provided) and volumeClaimTemplates: []
// (the CRD requires the field): what the trace's team-d used (record 145).
// The released one as is mounts mlserver-models without a volume, which
// the API server refuses in a Deployment (deployments-released-config-refused).

const (
	depNS     = "dep-team-a" // create, scale, rollout, quiet
	depConfig = "dep-config"
	depServer = "mlserver"
)

// depStrategy is the deploymentStrategy the Servers of these scenarios
// ask for (the 2.9.1 CRDs prune it: StandIn.SetDeploymentStrategy).
var depStrategy = appsv1.DeploymentStrategy{
	Type: appsv1.RollingUpdateDeploymentStrategyType,
	RollingUpdate: &appsv1.RollingUpdateDeployment{
		MaxUnavailable: ptrIntStr(intstr.FromInt32(1)),
		MaxSurge:       ptrIntStr(intstr.FromInt32(0)),
	},
}

func ptrIntStr(v intstr.IntOrString) *intstr.IntOrString { return &v }

// deploymentModeConfig turns a ServerConfig into one that works as a
// Deployment: each claim template becomes an emptyDir volume of its name,
// and no claim templates are left.
func deploymentModeConfig(sc *unstructured.Unstructured) *unstructured.Unstructured {
	o := sc.DeepCopy()
	vcts, _, _ := unstructured.NestedSlice(o.Object, "spec", "volumeClaimTemplates")
	volumes, _, _ := unstructured.NestedSlice(o.Object, "spec", "podSpec", "volumes")
	for _, v := range vcts {
		if m, ok := v.(map[string]any); ok {
			volumes = append(volumes, map[string]any{"name": m["name"], "emptyDir": map[string]any{}})
		}
	}
	_ = unstructured.SetNestedSlice(o.Object, volumes, "spec", "podSpec", "volumes")
	_ = unstructured.SetNestedSlice(o.Object, []any{}, "spec", "volumeClaimTemplates")
	return o
}

// depTeamConfig is the team's Deployment-mode ServerConfig (team images).
func (s *Suite) depTeamConfig(ns, name string) *unstructured.Unstructured {
	return deploymentModeConfig(s.teamConfig(ns, name))
}

// depStandIn is a stand-in for 2.10.2 in Deployment mode that knows the
// strategy of the namespace's Servers.
func (s *Suite) depStandIn(ns string, servers ...string) *standin.StandIn {
	si := s.NewStandIn(standin.Mode2102Deployment)
	for _, n := range servers {
		si.SetDeploymentStrategy(ns, n, depStrategy)
	}
	return si
}

func (s *Suite) getDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	return s.CP.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
}

// waitDeploymentImages waits until the Deployment exists and its template
// carries want.
func (s *Suite) waitDeploymentImages(ctx context.Context, ns, name string, want map[string]string, timeout time.Duration) (time.Duration, string, error) {
	t0 := time.Now()
	last := "<no Deployment>"
	err := util.Poll(timeout, func() error {
		d, err := s.getDeployment(ctx, ns, name)
		if err != nil {
			return err
		}
		imgs := k8s.TemplateImages(d.Spec.Template.Spec)
		last = k8s.FmtImages(imgs)
		if !k8s.SameImages(imgs, want) {
			return fmt.Errorf("images %s", last)
		}
		return nil
	})
	return time.Since(t0), last, err
}

// settledDeployment waits until nobody writes the Deployment any more
// (kube-controller-manager's status and revision writes): resourceVersion
// unchanged for 2 s.
func (s *Suite) settledDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	deadline := time.Now().Add(60 * time.Second)
	var last *appsv1.Deployment
	same := 0
	for time.Now().Before(deadline) {
		d, err := s.getDeployment(ctx, ns, name)
		if err != nil {
			return nil, err
		}
		if last != nil && d.ResourceVersion == last.ResourceVersion {
			same++
			if same >= 4 {
				return d, nil
			}
		} else {
			same = 0
		}
		last = d
		time.Sleep(500 * time.Millisecond)
	}
	return nil, fmt.Errorf("deployment %s/%s kept changing for 60 s", ns, name)
}

// ensureDepTeam sets dep-team-a up (idempotent; the caller has started the
// Deployment-mode stand-in controller for it): the team's ServerConfig, the
// Server, the placeholder the sync loop makes in seldon-system, the
// Deployment the controller builds from it, admitted by the webhook.
func (s *Suite) ensureDepTeam(ctx context.Context) error {
	if err := s.CP.EnsureNamespace(ctx, depNS); err != nil {
		return err
	}
	if cur, err := s.getSC(ctx, depNS, depConfig); err != nil {
		return err
	} else if cur == nil {
		if err := s.Apply(ctx, s.depTeamConfig(depNS, depConfig)); err != nil {
			return err
		}
	}
	if _, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(depNS).Get(ctx, depServer, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if err := s.Apply(ctx, k8s.NewServer(depNS, depServer, depConfig, 1, nil)); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, depConfig, true, 30*time.Second); err != nil {
		return fmt.Errorf("no placeholder %s/%s from the sync loop: %w", k8s.ControllerNS, depConfig, err)
	}
	return util.Poll(60*time.Second, func() error {
		d, err := s.getDeployment(ctx, depNS, depServer)
		if err != nil {
			return err
		}
		if d.Annotations[syncSourceAnn] == "" {
			return fmt.Errorf("not admitted by the webhook yet")
		}
		return nil
	})
}

// startDepController starts the Deployment-mode stand-in controller for
// dep-team-a and sets the namespace up.
func (s *Suite) startDepController(ctx context.Context) (*standin.StandInController, error) {
	c, err := s.StartStandInControllerFor(ctx, s.depStandIn(depNS, depServer), depNS)
	if err != nil {
		return nil, err
	}
	if err := s.ensureDepTeam(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}
