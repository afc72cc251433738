package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"serverconfig-webhook/e2e/harness/k8s"
)

// scenarioEquivalence: for each case in tests/e2e/fixtures/
// equivalence-cases.yaml the StatefulSet the API server stored (the stand-in
// controller's object, mutated by the webhook, defaulted) must equal what
// `serverconfig-webhook render` makes of the same inputs, submitted with
// dryRun=All to the same API server without owner references (so the
// webhook's matchConditions skip it) and so defaulted the same way.
//
// This proves webhook == render through the real API server's patching and
// defaulting. It does NOT prove equivalence with Seldon's own Go code: the
// oracle that would run the upstream operator could not be built (its
// modules are not served by the module proxy).
const equivNS = "equiv"

type equivCase struct {
	Name         string               `json:"name"`
	Base         string               `json:"base"`
	Wrong        k8s.ServerConfigForm `json:"wrong"`
	ServerConfig struct {
		Metadata             map[string]any `json:"metadata,omitempty"`
		VolumeClaimTemplates *[]any         `json:"volumeClaimTemplates,omitempty"`
	} `json:"serverConfig"`
	Server struct {
		Metadata map[string]any `json:"metadata,omitempty"`
		Spec     map[string]any `json:"spec,omitempty"`
	} `json:"server"`
}

func loadEquivCases(repo string) ([]equivCase, error) {
	b, err := os.ReadFile(filepath.Join(repo, "tests", "e2e", "fixtures", "equivalence-cases.yaml"))
	if err != nil {
		return nil, err
	}
	var cs []equivCase
	return cs, yaml.Unmarshal(b, &cs)
}

func scenarioEquivalence(ctx context.Context, s *Suite) error {
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	cases, err := loadEquivCases(s.Cfg.Repo)
	if err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, equivNS); err != nil {
		return err
	}
	dir := filepath.Join(s.CP.Dir, "equivalence")
	for _, c := range cases {
		name := checkName("equivalence", c.Name)
		if err := s.equivCase(ctx, c, filepath.Join(dir, c.Name), name); err != nil {
			s.r.Fail(name, err)
		}
	}
	return nil
}

func (s *Suite) equivCase(ctx context.Context, c equivCase, dir, name string) error {
	team := s.Fx.ServerConfig(c.Base, c.Name, equivNS, "team")
	if md := c.ServerConfig.Metadata; md != nil {
		for _, k := range []string{"labels", "annotations"} {
			if v, ok := md[k]; ok {
				_ = unstructured.SetNestedField(team.Object, v, "metadata", k)
			}
		}
	}
	if v := c.ServerConfig.VolumeClaimTemplates; v != nil {
		_ = unstructured.SetNestedSlice(team.Object, *v, "spec", "volumeClaimTemplates")
	}
	var replicas int64 = 1
	if r, ok := c.Server.Spec["replicas"].(float64); ok {
		replicas = int64(r)
	}
	server := k8s.NewServer(equivNS, c.Name, c.Name, replicas, c.Server.Spec)
	if md := c.Server.Metadata; md != nil {
		for _, k := range []string{"labels", "annotations"} {
			if v, ok := md[k]; ok {
				_ = unstructured.SetNestedField(server.Object, v, "metadata", k)
			}
		}
	}
	wrong := c.Wrong
	if wrong == "" {
		wrong = k8s.FormPlatform
	}
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig(c.Base, c.Name, wrong), team, server); err != nil {
		return err
	}
	sent, stored, err := s.StandIn.Reconcile(ctx, equivNS, c.Name)
	if err != nil {
		return fmt.Errorf("stand-in controller write: %w", err)
	}

	// the inputs as the API server holds them
	srvObj, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(equivNS).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	scObj, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(equivNS).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// as a manifest: the stand-in, like the stock controller, builds its
	// object without TypeMeta (the client puts apiVersion/kind on the wire)
	manifest := sent.DeepCopy()
	manifest.APIVersion, manifest.Kind = "apps/v1", "StatefulSet"
	files := map[string]any{"statefulset.yaml": manifest, "server.yaml": srvObj.Object, "serverconfig.yaml": scObj.Object}
	if err := writeYAMLFiles(dir, files); err != nil {
		return err
	}
	rendered, err := s.render(dir)
	if err != nil {
		return err
	}
	dry, err := s.CP.DryRunDefaulted(ctx, rendered)
	if err != nil {
		return fmt.Errorf("dry-run create of render output: %w", err)
	}
	storedB, _ := yaml.Marshal(stored)
	dryB, _ := yaml.Marshal(dry)
	_ = os.WriteFile(filepath.Join(dir, "stored.yaml"), storedB, 0o644)
	_ = os.WriteFile(filepath.Join(dir, "render-dryrun.yaml"), dryB, 0o644)

	d := JSONDiff(stored.Spec, dry.Spec)
	s.r.Check(name+"/spec", d == "", "stored vs render (both defaulted): %s", d)
	d = JSONDiff(stored.Labels, dry.Labels) + JSONDiff(stored.Annotations, dry.Annotations)
	s.r.Check(name+"/metadata", d == "", "labels/annotations stored vs render: %s", d)
	return nil
}

// render runs `serverconfig-webhook render` on the case's files.
func (s *Suite) render(dir string) (*appsv1.StatefulSet, error) {
	cmd := exec.Command(s.WH.Bin, "render",
		"--statefulset", filepath.Join(dir, "statefulset.yaml"),
		"--server", filepath.Join(dir, "server.yaml"),
		"--serverconfig", filepath.Join(dir, "serverconfig.yaml"),
		"-o", "yaml")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("render: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	_ = os.WriteFile(filepath.Join(dir, "render.yaml"), out.Bytes(), 0o644)
	var sts appsv1.StatefulSet
	if err := yaml.UnmarshalStrict(out.Bytes(), &sts); err != nil {
		// be lenient about unknown fields; only fail on undecodable output
		if err2 := yaml.Unmarshal(out.Bytes(), &sts); err2 != nil {
			return nil, fmt.Errorf("render output: %v", err2)
		}
	}
	if sts.Kind != "" && sts.Kind != "StatefulSet" {
		return nil, fmt.Errorf("render output is a %s, not a StatefulSet", sts.Kind)
	}
	return &sts, nil
}

// writeYAMLFiles writes each object as YAML into dir, under its file name:
// the inputs of `render` for a scenario that runs the binary on files.
func writeYAMLFiles(dir string, files map[string]any) error {
	for f, o := range files {
		b, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
