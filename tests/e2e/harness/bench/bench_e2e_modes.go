package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The three admission set-ups of `e2e bench` and how the bench switches
// between them: the shipped webhook registration, nothing, or the
// MutatingAdmissionPolicy fixture with its binding. A switch is confirmed by
// probing the API server (dry-run creates) until it behaves as the mode says,
// rather than by sleeping.

const mapFixture = "tests/e2e/fixtures/mutating-admission-policy.yaml"

var gvrMAPBinding = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingadmissionpolicybindings"}

// mapPolicyOf names the policy of each map mode in the fixture.
var mapPolicyOf = map[string]string{
	modeMAP:     "serverconfig-images",
	modeMAPJSON: "serverconfig-images-jsonpatch",
}

func isMAP(mode string) bool { _, ok := mapPolicyOf[mode]; return ok }

// loadPolicies reads the fixture and groups each policy with its binding
// (spec.policyName) by mode.
func loadPolicies(repo string) (map[string][]*unstructured.Unstructured, error) {
	objs, err := k8s.DecodeYAMLFile(filepath.Join(repo, mapFixture))
	if err != nil {
		return nil, err
	}
	out := map[string][]*unstructured.Unstructured{}
	for mode, name := range mapPolicyOf {
		for _, o := range objs {
			ref, _, _ := unstructured.NestedString(o.Object, "spec", "policyName")
			if (o.GetKind() == "MutatingAdmissionPolicy" && o.GetName() == name) ||
				(o.GetKind() == "MutatingAdmissionPolicyBinding" && ref == name) {
				out[mode] = append(out[mode], o)
			}
		}
		if len(out[mode]) != 2 {
			return nil, fmt.Errorf("%s: want policy %s and one binding of it, found %d objects", mapFixture, name, len(out[mode]))
		}
	}
	return out, nil
}

// switchTo makes mode the only admission mutation of the bench's
// StatefulSets and waits until the API server applies it.
func (b *bench) switchTo(ctx context.Context, mode string) error {
	cp := b.s.CP
	dropMWC := func() error {
		err := cp.Dyn.Resource(k8s.GVRMWC).Delete(ctx, b.s.MWC.GetName(), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
	dropBinding := func() error {
		for _, objs := range b.policies {
			for _, o := range objs {
				if o.GetKind() != "MutatingAdmissionPolicyBinding" {
					continue
				}
				err := cp.Dyn.Resource(gvrMAPBinding).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
		}
		return nil
	}
	var err error
	if mode != modeKyverno {
		err = b.dropKyvernoPolicy(ctx)
	}
	if err != nil {
		return fmt.Errorf("switch to %s: %w", mode, err)
	}
	switch mode {
	case modeNone:
		if err = dropMWC(); err == nil {
			err = dropBinding()
		}
	case modeKyverno:
		if err = dropMWC(); err == nil {
			err = dropBinding()
		}
		if err == nil {
			err = b.applyKyvernoPolicy(ctx)
		}
	case modeWebhook, modeWebhookNoop:
		if err = dropBinding(); err == nil {
			_, err = cp.Dyn.Resource(k8s.GVRMWC).Create(ctx, b.s.MWC.DeepCopy(), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		}
	case modeMAP, modeMAPJSON:
		if err = dropMWC(); err == nil {
			err = dropBinding()
		}
		if err == nil {
			err = cp.Apply(ctx, b.policies[mode]...)
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return fmt.Errorf("switch to %s: %w", mode, err)
	}
	// three answers in a row as the mode says
	ok := 0
	return util.PollEvery(60*time.Second, 200*time.Millisecond, func() error {
		if err := b.probe(ctx, mode); err != nil {
			ok = 0
			return err
		}
		if ok++; ok < 3 {
			return fmt.Errorf("probe passed %d times", ok)
		}
		return nil
	})
}

// expect says whether a stored (or dry-run) StatefulSet of namespace ns looks
// the way mode makes it: the controller namespace's (platform) images and no
// webhook annotations with nothing registered; the team's images with the
// webhook's annotations under the webhook; the team's images without them
// under the policy.
func (b *bench) expect(mode, ns string, sts *appsv1.StatefulSet) error {
	got := k8s.TemplateImages(sts.Spec.Template.Spec)
	team := k8s.ExpectedImages(b.s.Fx.ServerConfig("mlserver", benchConfig, ns, "team"))
	want := b.s.PlatformImages("mlserver")
	annotated := len(k8s.WebhookAnnotations(sts.ObjectMeta)) > 0
	wantAnnotated := mode == modeWebhook || mode == modeWebhookNoop
	if mode != modeNone {
		want = team
	}
	if !k8s.SameImages(got, want) || annotated != wantAnnotated {
		return fmt.Errorf("%s: %s/%s has images [%s] (want [%s]), webhook annotations %v (want %v)",
			mode, ns, sts.Name, k8s.FmtImages(got), k8s.FmtImages(want), annotated, wantAnnotated)
	}
	return nil
}

func (b *bench) probe(ctx context.Context, mode string) error {
	if mode != modeKyverno {
		if err := b.kyvernoHooksOff(ctx); err != nil {
			return err
		}
	}
	ns := b.nss[0]
	obj := b.desired[ns].DeepCopy()
	obj.Name = "probe"
	out, err := b.client.AppsV1().StatefulSets(ns).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return err
	}
	return b.expect(mode, ns, out)
}

// makeFixed keeps, per namespace, the object the webhook makes of the
// stand-in's (a dry-run create with the webhook registered), without what
// the API server sets itself: sent again, it needs no patch.
func (b *bench) makeFixed(ctx context.Context) error {
	b.fixed = map[string]*appsv1.StatefulSet{}
	for _, ns := range b.nss {
		obj := b.desired[ns].DeepCopy()
		out, err := b.client.AppsV1().StatefulSets(ns).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if err := b.expect(modeWebhook, ns, out); err != nil {
			return err
		}
		out.UID, out.ResourceVersion, out.Generation = "", "", 0
		out.CreationTimestamp = metav1.Time{}
		out.ManagedFields = nil
		out.Status = appsv1.StatefulSetStatus{}
		b.fixed[ns] = out
	}
	return nil
}

// Check is the outcome of the MutatingAdmissionPolicy (or Kyverno
// ClusterPolicy) correctness check.
type Check struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// checkMAP: with only the policy bound, a real create in each of two team
// namespaces (each also holds a triton ServerConfig the policy must not
// pick) is stored with that namespace's own images and no webhook
// annotations; the stand-in's full Update with the controller namespace's
// images keeps them and leaves generation and spec unchanged (fixed point).
func (b *bench) checkMAP(ctx context.Context, mode string) *Check {
	var details []string
	for _, ns := range b.nss[:min(2, len(b.nss))] {
		d, err := b.checkMAPIn(ctx, mode, ns)
		if err != nil {
			return &Check{OK: false, Detail: err.Error()}
		}
		details = append(details, d)
	}
	util.Step("bench: %s: policy check passed: %v", mode, details)
	return &Check{OK: true, Detail: fmt.Sprint(details)}
}

func (b *bench) checkMAPIn(ctx context.Context, mode, ns string) (string, error) {
	sent := b.desired[ns].DeepCopy()
	sent.Name = "map-check"
	if err := b.s.CP.DeleteSTS(ctx, ns, sent.Name); err != nil {
		return "", err
	}
	stored, err := b.s.StandIn.Write(ctx, sent)
	if err != nil {
		return "", fmt.Errorf("map check: create %s/%s: %w", ns, sent.Name, err)
	}
	if err := b.expect(mode, ns, stored); err != nil {
		return "", fmt.Errorf("map check: create: %w", err)
	}
	again, err := b.s.StandIn.Write(ctx, sent)
	if err != nil {
		return "", fmt.Errorf("map check: full Update %s/%s: %w", ns, sent.Name, err)
	}
	if err := b.expect(mode, ns, again); err != nil {
		return "", fmt.Errorf("map check: full Update: %w", err)
	}
	if again.Generation != stored.Generation {
		return "", fmt.Errorf("map check: %s/%s: the controller's full Update with the controller namespace's images moved generation %d -> %d",
			ns, sent.Name, stored.Generation, again.Generation)
	}
	if err := b.s.CP.Kube.AppsV1().StatefulSets(ns).Delete(ctx, sent.Name, metav1.DeleteOptions{}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: stored [%s], generation %d after a full Update", ns, k8s.FmtImages(k8s.TemplateImages(again.Spec.Template.Spec)), again.Generation), nil
}
