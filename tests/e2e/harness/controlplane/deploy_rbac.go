package controlplane

// The `kubectl auth can-i` matrices of tests/deploy/README.md, asked of the
// real API server's authorizer with SubjectAccessReviews (what
// `kubectl auth can-i --as=... --as-group=...` sends, without kubectl).

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"serverconfig-webhook/e2e/harness/util"
)

// CanIRow is one row: verb, resource[.group][/name], namespace, expected.
type CanIRow struct {
	Verb, Resource, Namespace string
	Want                      bool
	Line                      int
}

func (r CanIRow) String() string {
	return fmt.Sprintf("%s %s %s", r.Verb, r.Resource, r.Namespace)
}

// LoadCanIMatrix reads the table after `<!-- can-i:NAME -->` in
// tests/deploy/README.md.
func LoadCanIMatrix(repo, name string) ([]CanIRow, error) {
	path := filepath.Join(repo, "tests", "deploy", "README.md")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []CanIRow
	in := false
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "<!-- can-i:"+name+" -->" {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 || cells[0] == "verb" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		if cells[3] != "yes" && cells[3] != "no" {
			return nil, fmt.Errorf("%s:%d: expected yes/no, got %q", path, n, cells[3])
		}
		rows = append(rows, CanIRow{Verb: cells[0], Resource: cells[1], Namespace: cells[2], Want: cells[3] == "yes", Line: n})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no rows after <!-- can-i:%s -->", path, name)
	}
	return rows, sc.Err()
}

// Attributes are the ResourceAttributes `kubectl auth can-i` sends for the
// row: resource.group/name; `(all)` and `(cluster)` are no namespace.
func (r CanIRow) Attributes() *authzv1.ResourceAttributes {
	res, name, _ := strings.Cut(r.Resource, "/")
	resource, group, _ := strings.Cut(res, ".")
	ns := r.Namespace
	if ns == "(all)" || ns == "(cluster)" {
		ns = ""
	}
	return &authzv1.ResourceAttributes{Namespace: ns, Verb: r.Verb, Group: group, Resource: resource, Name: name}
}

// CanI asks the authorizer whether the webhook's ServiceAccount (with the
// groups the API server gives a ServiceAccount token) may do row.
func (cp *ControlPlane) CanI(ctx context.Context, r CanIRow) (bool, string, error) {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User:               webhookSAUser,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ReleaseNS, "system:authenticated"},
		ResourceAttributes: r.Attributes(),
	}}
	out, err := cp.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", err
	}
	return out.Status.Allowed, out.Status.Reason, nil
}

// EvalMatrix asks every row and returns the rows whose answer differs.
func (cp *ControlPlane) EvalMatrix(ctx context.Context, rows []CanIRow) (yes, no int, wrong []string, err error) {
	for _, r := range rows {
		got, reason, err := cp.CanI(ctx, r)
		if err != nil {
			return yes, no, wrong, fmt.Errorf("%s: %w", r, err)
		}
		if got {
			yes++
		} else {
			no++
		}
		if got != r.Want {
			wrong = append(wrong, fmt.Sprintf("line %d `%s`: want %s, API server says %s (%s)", r.Line, r, yesNo(r.Want), yesNo(got), reason))
		}
	}
	return yes, no, wrong, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// WaitCanI polls until the authorizer answers want for row (its RBAC
// informers see a change a little after the write).
func (cp *ControlPlane) WaitCanI(ctx context.Context, r CanIRow, want bool) error {
	return util.Poll(30*time.Second, func() error {
		got, _, err := cp.CanI(ctx, r)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s: still %s", r, yesNo(got))
		}
		return nil
	})
}

var rbacKinds = map[string]schema.GroupVersionResource{
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// RBACObjects are the RBAC objects (rbacKinds) among objs.
func RBACObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if _, ok := rbacKinds[o.GetKind()]; ok {
			out = append(out, o)
		}
	}
	return out
}

// deleteObjects deletes RBAC objects (absent ones are fine).
func (cp *ControlPlane) DeleteRBAC(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvr := rbacKinds[o.GetKind()]
		var err error
		if o.GetNamespace() != "" {
			err = cp.Dyn.Resource(gvr).Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
		} else {
			err = cp.Dyn.Resource(gvr).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s: %w", ObjKey(o), err)
		}
	}
	return nil
}
