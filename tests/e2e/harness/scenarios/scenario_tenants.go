package scenarios

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// scenarioTenants: two namespaces with a ServerConfig of the same name (the
// released "mlserver") and different images; the controller namespace has
// the released one. Each StatefulSet gets its own namespace's images.
func scenarioTenants(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	tenants := []string{"tenant-a", "tenant-b"}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", "mlserver", k8s.FormPlatform)); err != nil {
		return err
	}
	for _, ns := range tenants {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
		if err := s.Apply(ctx, s.Fx.ServerConfig("mlserver", "mlserver", ns, "team"), k8s.NewServer(ns, "mlserver", "mlserver", 1, nil)); err != nil {
			return err
		}
	}
	for i, ns := range tenants {
		other := tenants[1-i]
		own, theirs := s.teamImages(ns, "mlserver", "mlserver"), s.teamImages(other, "mlserver", "mlserver")
		_, stored, err := s.StandIn.Reconcile(ctx, ns, "mlserver")
		if !s.r.Check(checkName("tenant-isolation", ns, "stored"), err == nil, "%v", err) {
			continue
		}
		imgs := k8s.TemplateImages(stored.Spec.Template.Spec)
		s.r.Check(checkName("tenant-isolation", ns, "own-images"), k8s.SameImages(imgs, own) && !k8s.SameImages(imgs, theirs),
			"stored %s; own %s", k8s.FmtImages(imgs), k8s.FmtImages(own))
		pods, err := s.CP.WaitPods(ctx, ns, "mlserver", 1, 60*time.Second)
		ok := err == nil
		for _, p := range pods {
			ok = ok && k8s.SameImages(k8s.TemplateImages(p.Spec), own)
		}
		s.r.Check(checkName("tenant-isolation", ns, "pods"), ok, "%d pods %v", len(pods), err)
	}
	return nil
}

// tenantUser is a client of the API server authenticated by a client
// certificate of the cluster CA: user name user, no groups.
func (s *Suite) tenantUser(user string) (kubernetes.Interface, dynamic.Interface, error) {
	return s.userClients(user, nil)
}

// userClients are clients of user (a client certificate of the cluster
// CA); warnings, when given, receives every admission warning.
func (s *Suite) userClients(user string, warnings rest.WarningHandler) (kubernetes.Interface, dynamic.Interface, error) {
	c, err := s.CP.CA.Issue(filepath.Join(s.CP.Dir, "pki"), user, user, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	cfg := &rest.Config{Host: s.CP.APIURL, TLSClientConfig: rest.TLSClientConfig{CAFile: s.CP.CA.Path, CertFile: c.Cert, KeyFile: c.Key},
		QPS: 50, Burst: 100, Timeout: 30 * time.Second, WarningHandler: warnings}
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	d, err := dynamic.NewForConfig(cfg)
	return k, d, err
}

// tenantRole gives user edit rights on mlops.seldon.io and apps objects in
// ns only (a Role and a RoleBinding; nothing cluster-wide).
func (s *Suite) tenantRole(ctx context.Context, ns, user string) error {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "tenant-edit", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"mlops.seldon.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets", "deployments"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events", "pods"}, Verbs: []string{"get", "list", "watch"}},
	}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tenant-edit", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tenant-edit"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}}
	if _, err := s.CP.Kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := s.CP.Kube.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// shippedFlag is the value of --name=value in the webhook's shipped flags.
func (s *Suite) shippedFlag(name string) string {
	for _, a := range s.WH.ShippedArgs {
		if strings.HasPrefix(a, "--"+name+"=") {
			return strings.TrimPrefix(a, "--"+name+"=")
		}
	}
	return ""
}

// placeholdersUsedBy counts the placeholders in the controller namespace
// named like a ServerConfig of ns (placeholders carry no list of users:
// what uses them is read from the namespaces).
func (s *Suite) placeholdersUsedBy(ctx context.Context, ns string) (int, []string, error) {
	own, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, nil, err
	}
	var ownNames []string
	for _, o := range own.Items {
		ownNames = append(ownNames, o.GetName())
	}
	return s.placeholdersNamed(ctx, ownNames)
}

// placeholdersNamed counts the placeholders in the controller namespace
// with one of these names.
func (s *Suite) placeholdersNamed(ctx context.Context, wanted []string) (int, []string, error) {
	l, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(k8s.ControllerNS).List(ctx, metav1.ListOptions{LabelSelector: syncManagedByLabel + "=" + syncManagedByValue})
	if err != nil {
		return 0, nil, err
	}
	mine := map[string]bool{}
	for _, n := range wanted {
		mine[n] = true
	}
	var names []string
	for _, o := range l.Items {
		if mine[o.GetName()] {
			names = append(names, o.GetName())
		}
	}
	return len(names), names, nil
}

// hasImageOf reports whether any image is from the team registry of ns.
func hasImageOf(imgs map[string]string, ns string) bool {
	for _, v := range imgs {
		if strings.HasPrefix(v, "harbor.test/"+ns+"/") {
			return true
		}
	}
	return false
}

// scenarioTenantRBAC: a tenant user whose RBAC allows editing Seldon and
// apps objects in tenant-a only (client certificate, a Role and a
// RoleBinding) tries to reach tenant-b through the webhook:
//   - a Server in tenant-a naming a ServerConfig that exists only in
//     tenant-b, and its StatefulSet (dry-run create as the tenant);
//   - a StatefulSet in tenant-a whose owner reference names tenant-b's
//     Server (name and uid);
//   - its own ServerConfig named like tenant-b's (sharing the placeholder);
//   - more ServerConfigs than --max-placeholders-per-namespace.
//
// B's images never reach A, B's objects are unchanged, and A causes at most
// the cap of placeholders (PlaceholderCapReached Events on the rest).
func scenarioTenantRBAC(ctx context.Context, s *Suite) error {
	const sc = "tenant-isolation-rbac"
	const nsA, nsB, user = "tenant-a", "tenant-b", "tenant-a-developer"
	const onlyB, bServer = "only-in-b", "b-server"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	for _, ns := range []string{nsA, nsB} {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	bImages := s.teamImages(nsB, "mlserver", onlyB)
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", "mlserver", k8s.FormPlatform),
		s.teamConfig(nsB, onlyB), k8s.NewServer(nsB, bServer, onlyB, 1, nil)); err != nil {
		return err
	}
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, onlyB, true, 30*time.Second); err != nil {
		return fmt.Errorf("placeholder for %s: %w", onlyB, err)
	}
	var bSTS *appsv1.StatefulSet
	if err := util.Poll(30*time.Second, func() error {
		var err error
		_, bSTS, err = s.StandIn.Reconcile(ctx, nsB, bServer)
		return err
	}); err != nil {
		return fmt.Errorf("tenant-b's StatefulSet: %w", err)
	}
	if !s.r.Check(checkName(sc, "b-baseline"), k8s.SameImages(k8s.TemplateImages(bSTS.Spec.Template.Spec), bImages), "%s", k8s.FmtImages(k8s.TemplateImages(bSTS.Spec.Template.Spec))) {
		return nil
	}
	bSC, err := s.getSC(ctx, nsB, onlyB)
	if err != nil || bSC == nil {
		return fmt.Errorf("tenant-b's ServerConfig: %v", err)
	}
	bSrv, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(nsB).Get(ctx, bServer, metav1.GetOptions{})
	if err != nil {
		return err
	}
	platform, err := s.getSC(ctx, k8s.ControllerNS, "mlserver")
	if err != nil {
		return err
	}

	if err := s.tenantRole(ctx, nsA, user); err != nil {
		return err
	}
	tk, td, err := s.tenantUser(user)
	if err != nil {
		return err
	}
	// RBAC is real: nothing in B, nothing in the controller namespace
	_, e1 := td.Resource(k8s.GVRServerConfig).Namespace(nsB).Get(ctx, onlyB, metav1.GetOptions{})
	_, e2 := td.Resource(k8s.GVRServer).Namespace(nsB).Create(ctx, k8s.NewServer(nsB, "intruder", onlyB, 1, nil), metav1.CreateOptions{})
	_, e3 := td.Resource(k8s.GVRServerConfig).Namespace(k8s.ControllerNS).Create(ctx, s.teamConfig(k8s.ControllerNS, "intruder"), metav1.CreateOptions{})
	var e4 error
	err = util.Poll(10*time.Second, func() error {
		_, e4 = td.Resource(k8s.GVRServer).Namespace(nsA).List(ctx, metav1.ListOptions{})
		return e4
	})
	s.r.Check(checkName(sc, "rbac-limited"), apierrors.IsForbidden(e1) && apierrors.IsForbidden(e2) && apierrors.IsForbidden(e3) && err == nil,
		"as %s: get B's ServerConfig: %v; create a Server in B: %v; create a ServerConfig in %s: %v; list Servers in A: %v", user, e1, e2, k8s.ControllerNS, e3, e4)

	// 1. a Server in A naming B's ServerConfig; the StatefulSet the
	// controller would build for it (from the placeholder), written as the tenant
	steal := k8s.NewServer(nsA, "a-steal", onlyB, 1, nil)
	if _, err := td.Resource(k8s.GVRServer).Namespace(nsA).Create(ctx, steal, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	desired, err := s.StandIn.Build(ctx, nsA, "a-steal")
	if err != nil {
		return err
	}
	got, err := tk.AppsV1().StatefulSets(nsA).Create(ctx, desired, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	res1 := fmt.Sprint(err)
	ok1 := err != nil // refused: nothing of B's
	if err == nil {
		imgs := k8s.TemplateImages(got.Spec.Template.Spec)
		res1 = "admitted with " + k8s.FmtImages(imgs)
		ok1 = !hasImageOf(imgs, nsB)
	}
	s.r.Check(checkName(sc, "server-naming-b-config"), ok1, "StatefulSet of Server %s/a-steal (serverConfig %q, which exists only in %s): %s", nsA, onlyB, nsB, res1)

	// 2. a StatefulSet in A whose owner reference names B's Server
	own := desired.DeepCopy()
	own.Name = "a-owner"
	own.OwnerReferences[0].Name, own.OwnerReferences[0].UID = bServer, bSrv.GetUID()
	got, err = tk.AppsV1().StatefulSets(nsA).Create(ctx, own, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	res2 := fmt.Sprint(err)
	ok2 := err != nil
	if err == nil {
		imgs := k8s.TemplateImages(got.Spec.Template.Spec)
		res2 = "admitted with " + k8s.FmtImages(imgs)
		ok2 = !hasImageOf(imgs, nsB)
	}
	s.r.Check(checkName(sc, "owner-ref-to-b-server"), ok2, "StatefulSet in %s owned by Server %q uid %s of %s: %s", nsA, bServer, bSrv.GetUID(), nsB, res2)

	// 3. A's own ServerConfig named like B's: A's StatefulSet gets A's
	// images, B's keeps B's, the shared placeholder still has no images
	aCfg := s.teamConfig(nsA, onlyB)
	aCfg.SetResourceVersion("")
	if _, err := td.Resource(k8s.GVRServerConfig).Namespace(nsA).Create(ctx, aCfg, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	aImages := s.teamImages(nsA, "mlserver", onlyB)
	var aImgs map[string]string
	err = util.Poll(20*time.Second, func() error {
		got, err := tk.AppsV1().StatefulSets(nsA).Create(ctx, desired, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		aImgs = k8s.TemplateImages(got.Spec.Template.Spec)
		if !k8s.SameImages(aImgs, aImages) {
			return fmt.Errorf("images %s", k8s.FmtImages(aImgs))
		}
		return nil
	})
	s.r.Check(checkName(sc, "same-name-own-config"), err == nil, "A's StatefulSet with A's own %q: %s %v", onlyB, k8s.FmtImages(aImgs), err)
	// the sync loop adds A to the shared placeholder's used-by; B's stored
	// objects stay as they were, and B's StatefulSet as the controller
	// builds it (from the shared placeholder) still gets B's own images
	phOK, phDetail := false, "missing"
	_ = util.Poll(30*time.Second, func() error {
		ph, err := s.getSC(ctx, k8s.ControllerNS, onlyB)
		if err != nil || ph == nil {
			return fmt.Errorf("placeholder: %v", err)
		}
		if phOK, phDetail = placeholderFacts(ph); !phOK {
			return fmt.Errorf("%s", phDetail)
		}
		return nil
	})
	bDesired, err := s.StandIn.Build(ctx, nsB, bServer)
	if err != nil {
		return err
	}
	bAgain, aerr := s.dryRunImages(ctx, bDesired, bServer+"-again")
	bNow, gerr := s.CP.GetSTS(ctx, nsB, bServer)
	bSCNow, _ := s.getSC(ctx, nsB, onlyB)
	platformNow, _ := s.getSC(ctx, k8s.ControllerNS, "mlserver")
	s.r.Check(checkName(sc, "b-unaffected"), aerr == nil && k8s.SameImages(bAgain, bImages) && gerr == nil &&
		k8s.SameImages(k8s.TemplateImages(bNow.Spec.Template.Spec), bImages) && bNow.Generation == bSTS.Generation &&
		bSCNow != nil && bSCNow.GetResourceVersion() == bSC.GetResourceVersion() && phOK &&
		platform != nil && platformNow != nil && platformNow.GetResourceVersion() == platform.GetResourceVersion(),
		"B's StatefulSet admitted again (dry-run create): %s %v; stored: generation %d -> %d %v; B's ServerConfig resourceVersion %s -> %s; shared placeholder: %s; %s/mlserver unchanged",
		k8s.FmtImages(bAgain), aerr, bSTS.Generation, func() int64 {
			if bNow == nil {
				return -1
			}
			return bNow.Generation
		}(), gerr, bSC.GetResourceVersion(), func() string {
			if bSCNow == nil {
				return "gone"
			}
			return bSCNow.GetResourceVersion()
		}(), phDetail, k8s.ControllerNS)

	// 4. more ServerConfigs than the cap
	capN, _ := strconv.Atoi(s.shippedFlag("max-placeholders-per-namespace"))
	if capN <= 0 {
		capN = 20
	}
	var spam []string
	for i := 0; i < capN+5; i++ {
		name := fmt.Sprintf("spam-%02d", i)
		spam = append(spam, name)
		if _, err := td.Resource(k8s.GVRServerConfig).Namespace(nsA).Create(ctx, s.teamConfig(nsA, name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	var n int
	var names []string
	err = util.Poll(60*time.Second, func() error {
		var err error
		n, names, err = s.placeholdersUsedBy(ctx, nsA)
		if err != nil {
			return err
		}
		if n < capN {
			return fmt.Errorf("%d placeholders used by %s", n, nsA)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a later pass must not add more
	n2, _, _ := s.placeholdersUsedBy(ctx, nsA)
	capEv, eerr := s.CP.Kube.CoreV1().Events(nsA).List(ctx, metav1.ListOptions{FieldSelector: "reason=PlaceholderCapReached"})
	nev := 0
	if eerr == nil {
		nev = len(capEv.Items)
	}
	s.r.Check(checkName(sc, "placeholders-capped"), err == nil && n == capN && n2 == capN && nev > 0,
		"%d ServerConfigs in %s (plus %q): %d placeholders used by %s (cap %d; %d a few seconds later), %d PlaceholderCapReached Events %v %v",
		len(spam), nsA, onlyB, n, nsA, capN, n2, nev, err, eerr)
	_ = names
	// the leader's gauge says how many names the cap left out (at least
	// the 5 spam names past it), as the alert rule reads it
	capped := metricValue(s.WH.Metrics(), "serverconfig_webhook_capped_placeholders", "")
	s.r.Check(checkName(sc, "capped-gauge"), capped >= 5,
		"serverconfig_webhook_capped_placeholders = %v with %d ServerConfigs in %s past the cap of %d", capped, len(spam), nsA, capN)

	// clean up what the tenant made (its placeholders go with it)
	for _, name := range append(spam, onlyB) {
		_ = td.Resource(k8s.GVRServerConfig).Namespace(nsA).Delete(ctx, name, metav1.DeleteOptions{})
	}
	_ = td.Resource(k8s.GVRServer).Namespace(nsA).Delete(ctx, "a-steal", metav1.DeleteOptions{})
	err = util.Poll(60*time.Second, func() error {
		n, left, err := s.placeholdersNamed(ctx, spam)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d placeholders of %s's names still there: %v", n, nsA, left)
		}
		return nil
	})
	s.r.Check(checkName(sc, "placeholders-released"), err == nil, "after the tenant deleted its ServerConfigs: %v", err)
	// other namespaces may have names past the cap too: this tenant's go
	err = util.Poll(30*time.Second, func() error {
		if left := metricValue(s.WH.Metrics(), "serverconfig_webhook_capped_placeholders", ""); left < 0 || left > capped-5 {
			return fmt.Errorf("serverconfig_webhook_capped_placeholders = %v (was %v)", left, capped)
		}
		return nil
	})
	s.r.Check(checkName(sc, "capped-gauge-falls"), err == nil, "after the tenant deleted its ServerConfigs: %v", err)
	return nil
}
