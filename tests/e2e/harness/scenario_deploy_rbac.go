package main

import (
	"context"
	"fmt"
)

// scenarioDeployRBAC: the can-i matrices of tests/deploy/README.md asked of
// the real authorizer (SubjectAccessReview as the webhook's ServiceAccount
// and its groups) after applying the rendered RBAC. Default values first;
// then the RBAC of `helm template -f tests/deploy/values-scoped.yaml`
// replaces it for the scoped matrix, and the default RBAC is put back.
func scenarioDeployRBAC(ctx context.Context, s *Suite) error {
	const sc = "deploy-rbac-can-i"
	for _, ns := range []string{"team-a", "team-b", "team-c", controllerNS, releaseNS} {
		if err := s.cp.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	defObjs, err := HelmTemplate(s.cfg)
	if err != nil {
		return err
	}
	defRBAC := rbacObjects(defObjs)
	if err := s.apply(ctx, defRBAC...); err != nil {
		return err
	}
	rows, err := LoadCanIMatrix(s.cfg.Repo, "default")
	if err != nil {
		return err
	}
	// a fresh grant shows up in the authorizer a little later
	if err := s.cp.waitCanI(ctx, CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "(all)"}, true); err != nil {
		return fmt.Errorf("default RBAC not effective: %w", err)
	}
	yes, no, wrong, err := s.cp.EvalMatrix(ctx, rows)
	if err != nil {
		return err
	}
	s.r.Check(checkName(sc, "default"), len(wrong) == 0, "%d rows (%d yes, %d no) from %d RBAC objects of helm template; %d differ%s",
		len(rows), yes, no, len(defRBAC), len(wrong), failures(wrong))

	// scoped values: swap the RBAC, ask, swap back
	scObjs, err := HelmTemplate(s.cfg, "-f", scopedValues)
	if err != nil {
		return err
	}
	scRBAC := rbacObjects(scObjs)
	srows, err := LoadCanIMatrix(s.cfg.Repo, "scoped")
	if err != nil {
		return err
	}
	restore := func() error {
		if err := s.cp.deleteRBAC(ctx, scRBAC); err != nil {
			return err
		}
		if err := s.apply(ctx, defRBAC...); err != nil {
			return err
		}
		return s.cp.waitCanI(ctx, CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "(all)"}, true)
	}
	if err := s.cp.deleteRBAC(ctx, defRBAC); err != nil {
		return err
	}
	if err := s.apply(ctx, scRBAC...); err != nil {
		_ = restore()
		return err
	}
	werr := s.cp.waitCanI(ctx, CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "(all)"}, false)
	if werr == nil {
		werr = s.cp.waitCanI(ctx, CanIRow{Verb: "list", Resource: "servers.mlops.seldon.io", Namespace: "team-a"}, true)
	}
	if werr == nil {
		yes, no, wrong, err = s.cp.EvalMatrix(ctx, srows)
		if err == nil {
			s.r.Check(checkName(sc, "scoped"), len(wrong) == 0, "%d rows (%d yes, %d no) from %d RBAC objects of helm template -f %s; %d differ%s",
				len(srows), yes, no, len(scRBAC), scopedValues, len(wrong), failures(wrong))
		}
	} else {
		err = werr
	}
	rerr := restore()
	s.r.Check(checkName(sc, "default-rbac-restored"), rerr == nil, "%v", rerr)
	return err
}
