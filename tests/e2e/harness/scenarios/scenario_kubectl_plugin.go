package scenarios

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// `kubectl serverconfig` (docs/ecosystem.md#kubectl-plugin): the webhook
// binary linked as kubectl-serverconfig in a folder on PATH, run through
// the real kubectl of the control plane's version (built from
// k8s.io/kubernetes/cmd/kubectl by xtask) with kubectl's flags, against
// the harness's API server. Each plugin answer is compared with the normal
// binary's for the same question.
//
//   - kubectl-plugin-doctor: plugin list, --version, -n / the context's
//     namespace / -A deciding which Servers are reported, a wrong
//     --context or --user, flags before the plugin name (kubectl's own
//     refusal), `serve` under the plugin name;
//   - kubectl-plugin-render: the same output as `serverconfig-webhook
//     render`, the team's images, and a cluster flag refused;
//   - kubectl-plugin-migrate: `-n` as --from in a dry run (same plan, nothing
//     written), the context's namespace never taken as the source;
//   - kubectl-plugin-krew-install: krew installs deploy/krew/serverconfig.yaml
//     (filled by deploy/krew/fill-manifest.sh, as a release does) from an
//     archive of the binary, and kubectl runs the plugin through krew's link.

const (
	kpNSA      = "kplug-a"
	kpNSB      = "kplug-b"
	kpNSMig    = "kplug-mig"
	kpNSRender = "kplug-render"
)

// kubectlPlugin is the PATH folder with the plugin and the kubeconfig the
// plugin scenarios use.
type kubectlPlugin struct {
	dir        string // holds bin/ and the kubeconfig
	bin        string // on PATH first: kubectl-serverconfig -> the webhook binary
	kubeconfig string // the admin kubeconfig plus contexts e2e-a, e2e-b, e2e-mig (with namespaces)
}

var kpState *kubectlPlugin

// kubectlPluginSetup links the plugin and writes the kubeconfig, once.
func (s *Suite) kubectlPluginSetup() (*kubectlPlugin, error) {
	if kpState != nil {
		return kpState, nil
	}
	if s.Cfg.Kubectl == "" {
		return nil, fmt.Errorf("no --kubectl: cargo xtask e2e builds it (tests/e2e/peers/k8s-v*/tools.go)")
	}
	dir, err := os.MkdirTemp("", "serverconfig-e2e-kubectl-")
	if err != nil {
		return nil, err
	}
	util.AtExit(func() { os.RemoveAll(dir) })
	p := &kubectlPlugin{dir: dir, bin: filepath.Join(dir, "bin"), kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := os.MkdirAll(p.bin, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(s.WH.Bin, filepath.Join(p.bin, "kubectl-serverconfig")); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.LoadFromFile(s.CP.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	admin, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("admin kubeconfig: no context %q", cfg.CurrentContext)
	}
	for name, ns := range map[string]string{"e2e-a": kpNSA, "e2e-b": kpNSB, "e2e-mig": kpNSMig} {
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: admin.Cluster, AuthInfo: admin.AuthInfo, Namespace: ns}
	}
	if err := clientcmd.WriteToFile(*cfg, p.kubeconfig); err != nil {
		return nil, err
	}
	kpState = p
	return p, nil
}

// kubectl runs the real kubectl with the plugin folder first on PATH and
// env added; it returns the exit code, stdout and stderr.
func (s *Suite) kubectl(ctx context.Context, p *kubectlPlugin, env []string, args ...string) (int, string, string) {
	return runCmd(ctx, append([]string{"PATH=" + p.bin + string(os.PathListSeparator) + os.Getenv("PATH")}, env...), s.Cfg.Kubectl, args...)
}

// webhookCmd runs the normal binary with the admin kubeconfig.
// doctorBesideNormal runs `kubectl serverconfig doctor ARGS` between two
// runs of the normal binary's `doctor --watch-namespaces NS -o json`, until
// those two agree (the sync loop may still be acting on objects just
// applied, which changes the report), and returns the plugin's exit code,
// output and stderr and the normal binary's exit code and output.
func (s *Suite) doctorBesideNormal(ctx context.Context, p *kubectlPlugin, args []string, ns string) (int, string, string, int, string) {
	var code, wantCode int
	var out, errOut, want string
	for try := 0; try < 10; try++ {
		beforeCode, before, _ := s.webhookCmd(ctx, "doctor", "--watch-namespaces="+ns, "-o", "json")
		code, out, errOut = s.kubectl(ctx, p, nil, append([]string{"serverconfig", "doctor"}, args...)...)
		wantCode, want, _ = s.webhookCmd(ctx, "doctor", "--watch-namespaces="+ns, "-o", "json")
		if before == want && beforeCode == wantCode {
			break
		}
		time.Sleep(time.Second)
	}
	return code, out, errOut, wantCode, want
}

func (s *Suite) webhookCmd(ctx context.Context, args ...string) (int, string, string) {
	return runCmd(ctx, []string{"KUBECONFIG=" + s.CP.AdminKubeconfig}, s.WH.Bin, args...)
}

func runCmd(ctx context.Context, env []string, bin string, args ...string) (int, string, string) {
	return runCmdWithin(ctx, 90*time.Second, env, bin, args...)
}

// runCmdWithin is runCmd with its own time limit.
func runCmdWithin(ctx context.Context, limit time.Duration, env []string, bin string, args ...string) (int, string, string) {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, args...)
	cmd.Env = append(withoutEnv(os.Environ(), "KUBECONFIG", "PATH"), "PATH="+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			return -1, "", err.Error()
		}
	}
	util.Step("%s %s: exit %d", filepath.Base(bin), strings.Join(args, " "), code)
	return code, stdout.String(), stderr.String()
}

// withoutEnv drops the variables named from env (the last PATH wins anyway;
// KUBECONFIG must not leak in from the caller's shell).
func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// scenarioKubectlPluginDoctor: doctor through kubectl, namespaces chosen by
// kubectl's flags and the context, compared with the normal binary.
func scenarioKubectlPluginDoctor(ctx context.Context, s *Suite) error {
	p, err := s.kubectlPluginSetup()
	if err != nil {
		return err
	}
	for _, ns := range []string{kpNSA, kpNSB} {
		if err := s.CP.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// kplug-a: a Server with its ServerConfig; kplug-b: a Server whose
	// ServerConfig exists nowhere
	if err := s.Apply(ctx, s.teamConfig(kpNSA, "kp-config-a"), k8s.NewServer(kpNSA, "kp-srv-a", "kp-config-a", 1, nil),
		k8s.NewServer(kpNSB, "kp-srv-b", "kp-missing", 1, nil)); err != nil {
		return err
	}
	defer func() {
		_ = s.deleteServer(ctx, kpNSA, "kp-srv-a")
		_ = s.deleteServer(ctx, kpNSB, "kp-srv-b")
		_ = s.deleteSC(ctx, kpNSA, "kp-config-a")
	}()
	const sc = "kubectl-plugin-doctor"
	kc := "--kubeconfig=" + p.kubeconfig
	subjA, subjB := kpNSA+"/kp-srv-a", kpNSB+"/kp-srv-b"

	code, out, errOut := s.kubectl(ctx, p, nil, "plugin", "list")
	s.r.Check(sc+"/plugin-list-finds-it", code == 0 && strings.Contains(out, filepath.Join(p.bin, "kubectl-serverconfig")),
		"kubectl plugin list (exit %d): %s %s", code, util.OneLine(out), util.OneLine(errOut))
	code, out, errOut = s.kubectl(ctx, p, nil, "serverconfig", "--version")
	s.r.Check(sc+"/version", code == 0 && strings.HasPrefix(out, "kubectl-serverconfig "),
		"kubectl serverconfig --version (exit %d): %s %s", code, util.OneLine(out), util.OneLine(errOut))

	// -n: the same report as the normal binary's --watch-namespaces
	code, out, errOut, wantCode, want := s.doctorBesideNormal(ctx, p, []string{kc, "--context=e2e", "-n", kpNSA, "-o", "json"}, kpNSA)
	s.r.Check(sc+"/namespace-is-watch-namespaces", code == wantCode && out == want && strings.Contains(out, subjA) && !strings.Contains(out, kpNSB+"/"),
		"plugin exit %d, normal binary exit %d; plugin %s; normal %s; stderr %s", code, wantCode, util.OneLine(out), util.OneLine(want), util.OneLine(errOut))
	code, out, errOut = s.kubectl(ctx, p, nil, "serverconfig", "doctor", kc, "--namespace", kpNSB)
	s.r.Check(sc+"/namespace-b-fails-on-its-server", code == 1 && strings.Contains(out, subjB) && strings.Contains(out, "kp-missing") && !strings.Contains(out, subjA),
		"exit %d: %s %s", code, util.OneLine(lineWith(out, subjB)), util.OneLine(errOut))

	// no -n: the context's namespace, from KUBECONFIG as kubectl passes it on
	code, out, errOut = s.kubectl(ctx, p, []string{"KUBECONFIG=" + p.kubeconfig}, "serverconfig", "doctor", "--context", "e2e-b")
	s.r.Check(sc+"/context-namespace", code == 1 && strings.Contains(out, subjB) && !strings.Contains(out, subjA),
		"exit %d: %s %s", code, util.OneLine(out), util.OneLine(errOut))
	code, out, _ = s.kubectl(ctx, p, nil, "serverconfig", "doctor", kc, "--context=e2e-a", "-A")
	s.r.Check(sc+"/all-namespaces-overrides-the-context", strings.Contains(out, subjA) && strings.Contains(out, subjB),
		"exit %d: %s", code, util.OneLine(out))
	code, out, errOut, wantCode, want = s.doctorBesideNormal(ctx, p, []string{kc, "--context=e2e-a", "-o", "json"}, kpNSA)
	s.r.Check(sc+"/context-namespace-is-watch-namespaces", code == wantCode && out == want,
		"plugin exit %d, normal exit %d: %s %s", code, wantCode, util.OneLine(out), util.OneLine(errOut))

	// bad input: a sentence and exit 2, before any cluster access
	code, out, errOut = s.kubectl(ctx, p, nil, "serverconfig", "doctor", kc, "--context", "nope")
	s.r.Check(sc+"/wrong-context-exit-2", code == 2 && strings.Contains(errOut, `context "nope" is not in the kubeconfig`) && out == "",
		"exit %d: %s", code, util.OneLine(errOut))
	code, _, errOut = s.kubectl(ctx, p, nil, "serverconfig", "doctor", kc, "--user", "nobody")
	s.r.Check(sc+"/wrong-user-exit-2", code == 2 && strings.Contains(errOut, `user "nobody" is not in the kubeconfig`),
		"exit %d: %s", code, util.OneLine(errOut))
	code, _, errOut = s.kubectl(ctx, p, nil, "serverconfig", "doctor", "--kubeconfig", filepath.Join(p.dir, "missing"))
	s.r.Check(sc+"/missing-kubeconfig-exit-2", code == 2 && strings.Contains(errOut, "cannot read --kubeconfig"),
		"exit %d: %s", code, util.OneLine(errOut))
	code, _, errOut = s.kubectl(ctx, p, nil, "serverconfig", "serve")
	s.r.Check(sc+"/serve-is-not-a-plugin-command", code == 2 && strings.Contains(errOut, "`serve` is not a kubectl plugin command"),
		"exit %d: %s", code, util.OneLine(errOut))
	// kubectl itself refuses its flags before a plugin's name
	code, _, errOut = s.kubectl(ctx, p, nil, kc, "serverconfig", "doctor")
	s.r.Check(sc+"/flags-before-the-plugin-name-refused-by-kubectl", code == 1 && strings.Contains(errOut, "flags cannot be placed before plugin name"),
		"exit %d: %s", code, util.OneLine(errOut))
	// the normal binary under its own name takes no kubectl flags
	code, _, errOut = s.webhookCmd(ctx, "doctor", "-n", kpNSA)
	s.r.Check(sc+"/normal-binary-unchanged", code == 2 && strings.Contains(errOut, "unexpected argument '-n'"),
		"exit %d: %s", code, util.OneLine(errOut))
	return nil
}

// scenarioKubectlPluginRender: render through kubectl answers as the normal
// binary does, for files made from the API server's objects.
func scenarioKubectlPluginRender(ctx context.Context, s *Suite) error {
	p, err := s.kubectlPluginSetup()
	if err != nil {
		return err
	}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, kpNSRender); err != nil {
		return err
	}
	const sc, name = "kubectl-plugin-render", "kp-render"
	team := s.teamConfig(kpNSRender, name)
	server := k8s.NewServer(kpNSRender, name, name, 1, nil)
	if err := s.Apply(ctx, s.Fx.ControllerNSConfig("mlserver", name, k8s.FormPlatform), team, server); err != nil {
		return err
	}
	defer func() {
		_ = s.deleteServer(ctx, kpNSRender, name)
		_ = s.deleteSC(ctx, kpNSRender, name)
	}()
	sent, _, err := s.StandIn.Reconcile(ctx, kpNSRender, name)
	if err != nil {
		return fmt.Errorf("stand-in controller write: %w", err)
	}
	srvObj, err := s.CP.Dyn.Resource(k8s.GVRServer).Namespace(kpNSRender).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	scObj, err := s.CP.Dyn.Resource(k8s.GVRServerConfig).Namespace(kpNSRender).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	manifest := sent.DeepCopy()
	manifest.APIVersion, manifest.Kind = "apps/v1", "StatefulSet"
	dir := filepath.Join(p.dir, "render")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]any{"sts.yaml": manifest, "server.yaml": srvObj.Object, "sc.yaml": scObj.Object}
	if err := writeYAMLFiles(dir, files); err != nil {
		return err
	}
	args := []string{"render", "--statefulset", filepath.Join(dir, "sts.yaml"), "--server", filepath.Join(dir, "server.yaml"),
		"--serverconfig", filepath.Join(dir, "sc.yaml"), "-o", "json"}
	code, out, errOut := s.kubectl(ctx, p, nil, append([]string{"serverconfig"}, args...)...)
	wantCode, want, _ := s.webhookCmd(ctx, args...)
	var fixed struct {
		Spec struct {
			Template struct {
				Spec map[string]any `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	imgs := map[string]string{}
	if err := yaml.Unmarshal([]byte(out), &fixed); err == nil {
		imgs = podSpecImages(fixed.Spec.Template.Spec)
	}
	s.r.Check(sc+"/same-as-the-normal-binary", code == 0 && wantCode == 0 && out == want && out != "",
		"plugin exit %d, normal exit %d; %d vs %d bytes; stderr %s", code, wantCode, len(out), len(want), util.OneLine(errOut))
	wantImgs := s.teamImages(kpNSRender, "mlserver", name)
	s.r.Check(sc+"/team-images", k8s.SameImages(imgs, wantImgs), "rendered %v, want %v", imgs, wantImgs)
	code, _, errOut = s.kubectl(ctx, p, nil, append([]string{"serverconfig"}, append(args, "--context=e2e")...)...)
	s.r.Check(sc+"/cluster-flag-refused", code == 2 && strings.Contains(errOut, "render reads files only") && strings.Contains(errOut, "drop --context"),
		"exit %d: %s", code, util.OneLine(errOut))
	return nil
}

// podSpecImages: container name -> image of a pod spec decoded as JSON.
func podSpecImages(spec map[string]any) map[string]string {
	out := map[string]string{}
	cs, _ := spec["containers"].([]any)
	for _, c := range cs {
		m, _ := c.(map[string]any)
		name, _ := m["name"].(string)
		img, _ := m["image"].(string)
		out[name] = img
	}
	return out
}

// scenarioKubectlPluginMigrate: `-n` is --from: the dry run's plan is the
// normal binary's and nothing is written; the context's namespace is never
// the source.
func scenarioKubectlPluginMigrate(ctx context.Context, s *Suite) error {
	p, err := s.kubectlPluginSetup()
	if err != nil {
		return err
	}
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, kpNSMig); err != nil {
		return err
	}
	defer s.migRestoreController(ctx)
	if err := s.migController(ctx, "true", ""); err != nil {
		return err
	}
	set := migSet("kp-mig")
	if err := s.Apply(ctx, s.migObjects(kpNSMig, "kp-mig", kpNSMig)...); err != nil {
		return err
	}
	defer func() {
		for i := len(set) - 1; i >= 0; i-- {
			_ = s.CP.Dyn.Resource(set[i].gvr).Namespace(kpNSMig).Delete(ctx, set[i].name, metav1.DeleteOptions{})
		}
	}()
	const sc = "kubectl-plugin-migrate"
	kc := "--kubeconfig=" + p.kubeconfig
	rb := filepath.Join(p.dir, "rollback.yaml")
	// what seldon-system holds of the set before (the sync loop's
	// placeholder of the ServerConfig's name, once it has made it)
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, set[0].name, true, 30*time.Second); err != nil {
		return fmt.Errorf("setup: no placeholder: %w", err)
	}
	before, err := s.kpVersions(ctx, set, k8s.ControllerNS)
	if err != nil {
		return err
	}
	code, out, errOut := s.kubectl(ctx, p, nil, "serverconfig", "migrate", kc, "--context=e2e", "-n", kpNSMig,
		"--to", k8s.ControllerNS, "--dry-run", "--rollback-file", rb)
	wantCode, want, wantErr := s.webhookCmd(ctx, "migrate", "--from", kpNSMig, "--to", k8s.ControllerNS, "--dry-run", "--rollback-file", rb)
	_ = os.WriteFile(filepath.Join(s.CP.Dir, "kubectl-plugin-migrate-dry-run.txt"), []byte(out+errOut), 0o644)
	s.r.Check(sc+"/namespace-is-from", code == 0 && wantCode == 0 && out == want && strings.Contains(out, set[1].name),
		"plugin exit %d, normal exit %d; plugin %s %s; normal %s", code, wantCode, util.OneLine(out), util.OneLine(errOut), util.OneLine(want+wantErr))
	after, err := s.kpVersions(ctx, set, k8s.ControllerNS)
	if err != nil {
		return err
	}
	_, rbErr := os.Stat(rb)
	s.r.Check(sc+"/dry-run-writes-nothing", fmt.Sprint(before) == fmt.Sprint(after) && os.IsNotExist(rbErr),
		"in %s before %v, after %v; rollback file: %v", k8s.ControllerNS, before, after, rbErr)
	code, _, errOut = s.kubectl(ctx, p, []string{"KUBECONFIG=" + p.kubeconfig}, "serverconfig", "migrate", "--context=e2e-mig",
		"--to", k8s.ControllerNS, "--dry-run")
	s.r.Check(sc+"/context-namespace-is-not-the-source", code == 2 && strings.Contains(errOut, "--from"),
		"exit %d: %s", code, util.OneLine(errOut))
	code, _, errOut = s.kubectl(ctx, p, nil, "serverconfig", "migrate", kc, "-n", kpNSMig, "--from", kpNSA, "--to", k8s.ControllerNS)
	s.r.Check(sc+"/namespace-and-from-refused", code == 2 && strings.Contains(errOut, "give one"),
		"exit %d: %s", code, util.OneLine(errOut))
	code, _, errOut = s.kubectl(ctx, p, nil, "serverconfig", "migrate", kc, "--context=nope", "-n", kpNSMig, "--to", k8s.ControllerNS, "--dry-run")
	s.r.Check(sc+"/wrong-context-exit-2", code == 2 && strings.Contains(errOut, `context "nope" is not in the kubeconfig`),
		"exit %d: %s", code, util.OneLine(errOut))
	return nil
}

// kpVersions: kind/name -> resourceVersion of the set's objects in ns.
func (s *Suite) kpVersions(ctx context.Context, set []migObj, ns string) (map[string]string, error) {
	out := map[string]string{}
	for _, o := range set {
		u, err := s.migGet(ctx, o, ns)
		if err != nil {
			return nil, err
		}
		if u != nil {
			out[o.key()] = u.GetResourceVersion()
		}
	}
	return out, nil
}

// scenarioKubectlPluginKrew: krew installs the manifest a release would
// publish (deploy/krew/serverconfig.yaml filled by fill-manifest.sh for an
// archive of this binary), and kubectl finds and runs the plugin through
// krew's link.
func scenarioKubectlPluginKrew(ctx context.Context, s *Suite) error {
	p, err := s.kubectlPluginSetup()
	if err != nil {
		return err
	}
	if s.Cfg.Krew == "" {
		return fmt.Errorf("no --krew: cargo xtask e2e builds it (tests/deploy/lib.sh krew_bin)")
	}
	const sc = "kubectl-plugin-krew-install"
	dir := filepath.Join(p.dir, "krew")
	if err := os.MkdirAll(filepath.Join(dir, "manifest"), 0o755); err != nil {
		return err
	}
	archive := filepath.Join(dir, "serverconfig-webhook-linux-amd64.tar.gz")
	if err := tarGz(archive, s.WH.Bin, "serverconfig-webhook"); err != nil {
		return err
	}
	committed := filepath.Join(s.Cfg.Repo, "deploy", "krew", "serverconfig.yaml")
	b, err := os.ReadFile(committed)
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^  version: (\S+)$`).FindSubmatch(b)
	if m == nil {
		return fmt.Errorf("%s: no spec.version", committed)
	}
	manifest := filepath.Join(dir, "manifest", "serverconfig.yaml")
	code, filled, errOut := runCmd(ctx, nil, filepath.Join(s.Cfg.Repo, "deploy", "krew", "fill-manifest.sh"),
		string(m[1]), "https://example.test/serverconfig-webhook-linux-amd64.tar.gz", archive)
	if code != 0 {
		return fmt.Errorf("fill-manifest.sh: exit %d: %s", code, errOut)
	}
	if err := os.WriteFile(manifest, []byte(filled), 0o644); err != nil {
		return err
	}
	root := filepath.Join(dir, "root")
	krewEnv := []string{"KREW_ROOT=" + root, "HOME=" + dir, "KREW_OS=linux", "KREW_ARCH=amd64", "KREW_NO_UPGRADE_CHECK=1"}
	code, out, errOut := runCmd(ctx, krewEnv, s.Cfg.Krew, "install", "--manifest="+manifest, "--archive="+archive)
	s.r.Check(sc+"/krew-install", code == 0, "krew install --manifest --archive (exit %d): %s %s", code, util.OneLine(out), util.OneLine(errOut))
	link := filepath.Join(root, "bin", "kubectl-serverconfig")
	target, lerr := os.Readlink(link)
	s.r.Check(sc+"/link", lerr == nil && filepath.Base(target) == "serverconfig-webhook", "%s -> %s (%v)", link, target, lerr)
	// only krew's bin on PATH before the system's: kubectl must take krew's link
	env := []string{"PATH=" + filepath.Join(root, "bin") + string(os.PathListSeparator) + os.Getenv("PATH")}
	code, out, _ = runCmd(ctx, env, s.Cfg.Kubectl, "plugin", "list")
	s.r.Check(sc+"/plugin-list", code == 0 && strings.Contains(out, link), "exit %d: %s", code, util.OneLine(out))
	code, out, errOut = runCmd(ctx, env, s.Cfg.Kubectl, "serverconfig", "doctor", "--kubeconfig="+p.kubeconfig, "--context=e2e", "-n", kpNSA, "-o", "json")
	wantCode, want, _ := s.webhookCmd(ctx, "doctor", "--watch-namespaces="+kpNSA, "-o", "json")
	s.r.Check(sc+"/doctor-through-krew", code == wantCode && out == want && strings.Contains(out, `"servers"`),
		"plugin exit %d, normal exit %d: %s %s", code, wantCode, util.OneLine(out), util.OneLine(errOut))
	return nil
}

// tarGz writes a .tar.gz holding the file src as name (mode 0755).
func tarGz(path, src, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	// the debug binary is large: the fastest level keeps this to seconds
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}
