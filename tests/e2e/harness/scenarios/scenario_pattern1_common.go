package scenarios

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"serverconfig-webhook/e2e/harness/k8s"
)

// The seed's Pattern 1 (Scoped Operator Pattern): the team's own
// ServerConfig and Server live in the application namespaces.
var appNamespaces = []string{"financial-mlops-pytorch", "financial-inference"}

const (
	p1ServerConfig = "mlserver-config"
	p1Server       = "mlserver"
)

// applyPattern1 applies the seed's Pattern 1 resources, with the
// controller-namespace ServerConfig of the same name in the given form.
func (s *Suite) applyPattern1(ctx context.Context, form k8s.ServerConfigForm) error {
	for _, ns := range append([]string{k8s.ControllerNS}, appNamespaces...) {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", p1ServerConfig, form)); err != nil {
		return err
	}
	for _, ns := range appNamespaces {
		if err := s.Apply(ctx,
			s.Fx.ServerConfig("mlserver", p1ServerConfig, ns, "team"),
			k8s.NewServer(ns, p1Server, p1ServerConfig, 1, nil),
		); err != nil {
			return err
		}
	}
	return nil
}

// teamImages are the images the namespace's own ServerConfig names.
func (s *Suite) teamImages(ns, base, scName string) map[string]string {
	return k8s.ExpectedImages(s.Fx.ServerConfig(base, scName, ns, "team"))
}

// PlatformImages are the images the platform ServerConfig of base sets.
func (s *Suite) PlatformImages(base string) map[string]string {
	return k8s.ExpectedImages(s.Fx.ServerConfig(base, "x", k8s.ControllerNS, "platform"))
}

func checkName(parts ...any) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += "/"
		}
		out += fmt.Sprint(p)
	}
	return out
}

// ensurePattern1 makes sure the seed's Pattern 1 StatefulSets exist (they
// do after pattern1-seed-test-case-2; made here when a scenario runs alone).
func (s *Suite) ensurePattern1(ctx context.Context) error {
	for _, ns := range appNamespaces {
		if _, err := s.CP.GetSTS(ctx, ns, p1Server); err == nil {
			continue
		} else if !apierrors.IsNotFound(err) {
			return err
		}
		if err := s.applyPattern1(ctx, k8s.FormPlatform); err != nil {
			return err
		}
		if _, _, err := s.StandIn.Reconcile(ctx, ns, p1Server); err != nil {
			return err
		}
	}
	return nil
}
