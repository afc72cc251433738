package scenarios

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

const managedByKey, managedByVal = "app.kubernetes.io/managed-by", "serverconfig-webhook"

// scenarioDeployGuard: the rendered ValidatingAdmissionPolicy and its
// binding, applied for real, and requests made AS the webhook's
// ServiceAccount (its client certificate, rbac.go): an unlabelled
// ServerConfig in seldon-system cannot be created, labelled, updated or
// deleted by it; a labelled one can; nothing in an application namespace
// (RBAC). The admin (not matched by the policy) is not affected.
func scenarioDeployGuard(ctx context.Context, s *Suite) error {
	const sc = "deploy-placeholder-guard"
	objs, err := controlplane.HelmTemplate(s.Cfg)
	if err != nil {
		return err
	}
	var vap []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			vap = append(vap, o)
		}
	}
	if len(vap) != 2 {
		return fmt.Errorf("helm template: want a ValidatingAdmissionPolicy and its binding, found %d objects", len(vap))
	}
	if err := s.Apply(ctx, vap...); err != nil {
		return err
	}
	if err := s.Apply(ctx, controlplane.RBACObjects(objs)...); err != nil {
		return err
	}
	if s.WH.Kubeconfig == s.CP.WebhookKubeconfig {
		return fmt.Errorf("the harness has no ServiceAccount identity for the webhook (no RBAC shipped?)")
	}
	rc, err := restConfigFromKubeconfig(s.WH.Kubeconfig)
	if err != nil {
		return err
	}
	asSA, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	// the webhook's sync loop owns labelled ServerConfigs in seldon-system
	// and deletes unused ones: keep it out of this test
	if s.WH.Proc != nil {
		s.WH.Stop()
		defer func() {
			if err := s.WH.Start(); err != nil {
				s.r.Fail(checkName(sc, "webhook-restart"), err)
			}
		}()
	}
	saSC := asSA.Resource(k8s.GVRServerConfig)
	admSC := s.CP.Dyn.Resource(k8s.GVRServerConfig)
	mk := func(name, ns string, labelled bool) *unstructured.Unstructured {
		o := s.Fx.ServerConfig("mlserver", name, ns, "platform")
		if labelled {
			o.SetLabels(map[string]string{managedByKey: managedByVal})
		}
		return o
	}
	for _, n := range []string{"guard-unlabelled", "guard-labelled", "guard-team", "guard-squat"} {
		_ = admSC.Namespace(k8s.ControllerNS).Delete(ctx, n, metav1.DeleteOptions{})
	}
	denied := func(err error, op string) (bool, string) {
		if err == nil {
			return false, "allowed"
		}
		msg := err.Error()
		want := "serverconfig-webhook may only " + op + " ServerConfigs labelled app.kubernetes.io/managed-by=serverconfig-webhook"
		return apierrors.IsForbidden(err) && strings.Contains(msg, want) && strings.Contains(msg, "serverconfig-webhook-placeholder-guard"), msg
	}

	// 1. unlabelled create: denied (the policy takes effect shortly after it is created)
	var lastErr error
	perr := util.Poll(30*time.Second, func() error {
		_, lastErr = saSC.Namespace(k8s.ControllerNS).Create(ctx, mk("guard-unlabelled", k8s.ControllerNS, false), metav1.CreateOptions{})
		if lastErr == nil {
			_ = admSC.Namespace(k8s.ControllerNS).Delete(ctx, "guard-unlabelled", metav1.DeleteOptions{})
			return fmt.Errorf("created: policy not in force yet")
		}
		return nil
	})
	ok, msg := denied(lastErr, "CREATE")
	s.r.Check(checkName(sc, "create-unlabelled-denied"), perr == nil && ok, "%s", msg)

	// 2. labelled create, update: allowed
	_, err = saSC.Namespace(k8s.ControllerNS).Create(ctx, mk("guard-labelled", k8s.ControllerNS, true), metav1.CreateOptions{})
	s.r.Check(checkName(sc, "create-labelled-allowed"), err == nil, "%v", err)
	if err == nil {
		err = updateAs(ctx, saSC.Namespace(k8s.ControllerNS), "guard-labelled", func(o *unstructured.Unstructured) {
			o.SetAnnotations(map[string]string{"serverconfig-webhook/e2e": "touched"})
		})
		s.r.Check(checkName(sc, "update-labelled-allowed"), err == nil, "%v", err)
	}

	// 3. someone else's ServerConfig (created by the admin): the ServiceAccount
	// cannot adopt it by labelling it, nor change or delete it
	if _, err := admSC.Namespace(k8s.ControllerNS).Create(ctx, mk("guard-team", k8s.ControllerNS, false), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("admin create: %w", err)
	}
	err = updateAs(ctx, saSC.Namespace(k8s.ControllerNS), "guard-team", func(o *unstructured.Unstructured) {
		o.SetLabels(map[string]string{managedByKey: managedByVal})
	})
	ok, msg = denied(err, "UPDATE")
	s.r.Check(checkName(sc, "label-unlabelled-denied"), ok, "%s", msg)
	err = saSC.Namespace(k8s.ControllerNS).Delete(ctx, "guard-team", metav1.DeleteOptions{})
	ok, msg = denied(err, "DELETE")
	s.r.Check(checkName(sc, "delete-unlabelled-denied"), ok, "%s", msg)
	got, gerr := admSC.Namespace(k8s.ControllerNS).Get(ctx, "guard-team", metav1.GetOptions{})
	s.r.Check(checkName(sc, "unlabelled-untouched"), gerr == nil && got.GetLabels()[managedByKey] == "", "still there, unlabelled: %v", gerr)

	// 4. labelled delete: allowed
	err = saSC.Namespace(k8s.ControllerNS).Delete(ctx, "guard-labelled", metav1.DeleteOptions{})
	s.r.Check(checkName(sc, "delete-labelled-allowed"), err == nil, "%v", err)

	// 5. an application namespace: RBAC refuses even a labelled ServerConfig
	if err := s.CP.EnsureNamespace(ctx, "team-a"); err != nil {
		return err
	}
	_, err = saSC.Namespace("team-a").Create(ctx, mk("guard-labelled", "team-a", true), metav1.CreateOptions{})
	rbacDenied := err != nil && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource")
	s.r.Check(checkName(sc, "app-namespace-rbac-denied"), rbacDenied, "%v", err)
	_, err = asSA.Resource(gvrSecrets).Namespace(controlplane.ReleaseNS).List(ctx, metav1.ListOptions{})
	s.r.Check(checkName(sc, "secrets-rbac-denied"), err != nil && apierrors.IsForbidden(err), "list secrets in %s: %v", controlplane.ReleaseNS, err)

	// 6. the admin is not matched by the policy
	err = admSC.Namespace(k8s.ControllerNS).Delete(ctx, "guard-team", metav1.DeleteOptions{})
	s.r.Check(checkName(sc, "admin-unaffected"), err == nil, "admin deletes the unlabelled one: %v", err)

	// 6b. the platform turning a placeholder into its own config while
	// keeping the label (as `kubectl apply` over one would): refused;
	// dropping the label in the same change: allowed
	if _, err := saSC.Namespace(k8s.ControllerNS).Create(ctx, mk("guard-squat", k8s.ControllerNS, true), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("the ServiceAccount's labelled create: %w", err)
	}
	platformImage := "harbor.test/platform/agent:9"
	withImage := func(o *unstructured.Unstructured) {
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "podSpec", "containers")
		if len(cs) > 0 {
			if c, ok := cs[0].(map[string]any); ok {
				c["image"] = platformImage
			}
		}
		_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "podSpec", "containers")
	}
	err = updateAs(ctx, admSC.Namespace(k8s.ControllerNS), "guard-squat", withImage)
	keptLabel := err != nil && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "is a placeholder kept by serverconfig-webhook") &&
		strings.Contains(err.Error(), "remove that label")
	s.r.Check(checkName(sc, "keep-label-change-spec-denied"), keptLabel, "admin update keeping the label: %v", err)
	err = updateAs(ctx, admSC.Namespace(k8s.ControllerNS), "guard-squat", func(o *unstructured.Unstructured) {
		withImage(o)
		o.SetLabels(nil)
	})
	s.r.Check(checkName(sc, "drop-label-change-spec-allowed"), err == nil, "admin update dropping the label: %v", err)
	_ = admSC.Namespace(k8s.ControllerNS).Delete(ctx, "guard-squat", metav1.DeleteOptions{})

	// 7. the webhook's own sync loop (serve --sync, as shipped) works under
	// the policy: it creates a placeholder for a name a team uses and
	// seldon-system lacks, and deletes it when no team uses it any more
	const syncNS, syncName = "deploy-guard-sync", "guard-sync-config"
	if err := s.CP.EnsureNamespace(ctx, syncNS); err != nil {
		return err
	}
	if err := s.WH.Start(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := s.Apply(ctx, s.Fx.ServerConfig("mlserver", syncName, syncNS, "team"), k8s.NewServer(syncNS, "mlserver", syncName, 1, nil)); err != nil {
		return err
	}
	var ph *unstructured.Unstructured
	err = util.Poll(60*time.Second, func() error {
		var err error
		ph, err = admSC.Namespace(k8s.ControllerNS).Get(ctx, syncName, metav1.GetOptions{})
		return err
	})
	s.r.Check(checkName(sc, "sync-placeholder-created"), err == nil && ph.GetLabels()[managedByKey] == managedByVal,
		"%s/%s created by the sync loop %.1fs after the team's ServerConfig + Server, through the policy %v", k8s.ControllerNS, syncName, time.Since(t0).Seconds(), err)
	t1 := time.Now()
	_ = s.CP.Dyn.Resource(k8s.GVRServer).Namespace(syncNS).Delete(ctx, "mlserver", metav1.DeleteOptions{})
	_ = admSC.Namespace(syncNS).Delete(ctx, syncName, metav1.DeleteOptions{})
	err = util.Poll(90*time.Second, func() error {
		_, err := admSC.Namespace(k8s.ControllerNS).Get(ctx, syncName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("placeholder still there (%v)", err)
	})
	s.r.Check(checkName(sc, "sync-placeholder-deleted"), err == nil,
		"deleted by the sync loop %.1fs after the team's objects, through the policy %v", time.Since(t1).Seconds(), err)
	return nil
}

// updateAs gets the object and sends a full Update with change applied.
func updateAs(ctx context.Context, ri dynamic.ResourceInterface, name string, change func(*unstructured.Unstructured)) error {
	o, err := ri.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	change(o)
	_, err = ri.Update(ctx, o, metav1.UpdateOptions{})
	return err
}

// restConfigFromKubeconfig reads the harness's own kubeconfig shape (one
// cluster, one user with client certificate files; controlplane.go's
// writeKubeconfig) without pulling clientcmd into the harness module.
func restConfigFromKubeconfig(path string) (*rest.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `json:"server"`
				CA     string `json:"certificate-authority"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Cert string `json:"client-certificate"`
				Key  string `json:"client-key"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, err
	}
	if len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		return nil, fmt.Errorf("%s: want one cluster and one user", path)
	}
	c, u := kc.Clusters[0].Cluster, kc.Users[0].User
	return &rest.Config{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CA, CertFile: u.Cert, KeyFile: u.Key}, Timeout: 30 * time.Second}, nil
}
