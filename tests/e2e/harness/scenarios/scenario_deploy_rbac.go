package scenarios

import (
	"context"
	"fmt"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
)

// scenarioDeployRBAC: the can-i matrices of tests/deploy/README.md asked of
// the real authorizer (SubjectAccessReview as the webhook's ServiceAccount
// and its groups) after applying the rendered RBAC. Default values first;
// then the RBAC of `helm template -f tests/deploy/values-scoped.yaml`
// replaces it for the scoped matrix, and the default RBAC is put back.
func scenarioDeployRBAC(ctx context.Context, s *Suite) error {
	const sc = "deploy-rbac-can-i"
	for _, ns := range []string{"team-a", "team-b", "team-c", k8s.ControllerNS, controlplane.ReleaseNS} {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	defObjs, err := controlplane.HelmTemplate(s.Cfg)
	if err != nil {
		return err
	}
	defRBAC := controlplane.RBACObjects(defObjs)
	if err := s.Apply(ctx, defRBAC...); err != nil {
		return err
	}
	rows, err := controlplane.LoadCanIMatrix(s.Cfg.Repo, "default")
	if err != nil {
		return err
	}
	// a fresh grant shows up in the authorizer a little later
	if err := s.CP.WaitCanI(ctx, controlplane.CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "(all)"}, true); err != nil {
		return fmt.Errorf("default RBAC not effective: %w", err)
	}
	yes, no, wrong, err := s.CP.EvalMatrix(ctx, rows)
	if err != nil {
		return err
	}
	s.r.Check(checkName(sc, "default"), len(wrong) == 0, "%d rows (%d yes, %d no) from %d RBAC objects of helm template; %d differ%s",
		len(rows), yes, no, len(defRBAC), len(wrong), failures(wrong))

	// scoped values: swap the RBAC, ask, swap back
	scObjs, err := controlplane.HelmTemplate(s.Cfg, "-f", controlplane.ScopedValues)
	if err != nil {
		return err
	}
	scRBAC := controlplane.RBACObjects(scObjs)
	srows, err := controlplane.LoadCanIMatrix(s.Cfg.Repo, "scoped")
	if err != nil {
		return err
	}
	restore := func() error {
		if err := s.CP.DeleteRBAC(ctx, scRBAC); err != nil {
			return err
		}
		if err := s.Apply(ctx, defRBAC...); err != nil {
			return err
		}
		return s.CP.WaitCanI(ctx, controlplane.CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "(all)"}, true)
	}
	if err := s.CP.DeleteRBAC(ctx, defRBAC); err != nil {
		return err
	}
	if err := s.Apply(ctx, scRBAC...); err != nil {
		_ = restore()
		return err
	}
	werr := s.CP.WaitCanI(ctx, controlplane.CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "(all)"}, false)
	if werr == nil {
		werr = s.CP.WaitCanI(ctx, controlplane.CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "team-a"}, true)
	}
	if werr == nil {
		yes, no, wrong, err = s.CP.EvalMatrix(ctx, srows)
		if err == nil {
			s.r.Check(checkName(sc, "scoped"), len(wrong) == 0, "%d rows (%d yes, %d no) from %d RBAC objects of helm template -f %s; %d differ%s",
				len(srows), yes, no, len(scRBAC), controlplane.ScopedValues, len(wrong), failures(wrong))
		}
	} else {
		err = werr
	}
	rerr := restore()
	s.r.Check(checkName(sc, "default-rbac-restored"), rerr == nil, "%v", rerr)
	return err
}
