package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"serverconfig-webhook/e2e/harness/util"
)

// ControlPlane is etcd + kube-apiserver + kube-controller-manager on
// loopback ports, with certificates and kubeconfigs in Dir. No kubelet:
// Pods are created and stay Pending, which is all the scenarios need.
type ControlPlane struct {
	Dir             string
	CA              *CA
	APIURL          string
	AdminKubeconfig string
	// VIP is the balancer in front of kube-apiserver the webhook talks
	// through (balancer.go); WebhookKubeconfig is the admin kubeconfig
	// through it
	VIP               *Balancer
	WebhookKubeconfig string
	Admin             CertFiles
	Rest              *rest.Config
	Kube              kubernetes.Interface
	Dyn               dynamic.Interface
	Minor             int // server minor version, e.g. 33
	GitVersion        string

	// AuditLog is kube-apiserver's audit log (audit.go); empty when a
	// benchmark set its own policy
	AuditLog string

	// the peers' processes (a fault scenario stops and restarts them)
	Etcd, APIServer, KCM *util.Proc
	// how kube-apiserver was started, for StartAPIServer after a stop
	apiBin, apiLogs string
	apiArgs         []string
	startupWait     time.Duration
	// how etcd was started, for StartEtcd after a stop
	etcdBin, etcdURL string
	etcdArgs         []string
}

func StartControlPlane(cfg Config, dir string) (*ControlPlane, error) {
	cp := &ControlPlane{Dir: dir}
	pki := filepath.Join(dir, "pki")
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{pki, logs, filepath.Join(dir, "etcd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	util.Step("control plane: generating CA, certificates and service-account key in %s", pki)
	ca, err := NewCA(pki, "cluster-ca")
	if err != nil {
		return nil, err
	}
	cp.CA = ca
	serving, err := ca.Issue(pki, "apiserver", "kube-apiserver", nil,
		[]string{"127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		return nil, err
	}
	// static admin: a client certificate in system:masters (bound to
	// cluster-admin by the RBAC bootstrap policy)
	if cp.Admin, err = ca.Issue(pki, "admin", "e2e-admin", []string{"system:masters"}, nil); err != nil {
		return nil, err
	}
	kcmCert, err := ca.Issue(pki, "kube-controller-manager", "system:kube-controller-manager", []string{"system:masters"}, nil)
	if err != nil {
		return nil, err
	}
	saPriv, saPub, err := WriteServiceAccountKey(pki)
	if err != nil {
		return nil, err
	}

	// etcd
	etcdClient, etcdPeer := util.MustFreePort(), util.MustFreePort()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	cp.etcdBin, cp.etcdURL = cfg.Etcd, etcdURL
	cp.etcdArgs = []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
	cp.apiLogs, cp.startupWait = logs, cfg.StartupWait
	if err := cp.StartEtcd(); err != nil {
		return nil, err
	}

	// kube-apiserver
	apiPort := util.MustFreePort()
	cp.APIURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	util.Step("control plane: starting kube-apiserver on %s", cp.APIURL)
	cp.apiBin = filepath.Join(cfg.PeerDir, "kube-apiserver")
	auditArgs := ExtraAPIServerArgs
	if len(ExtraAPIServerArgs) == 0 {
		if auditArgs, cp.AuditLog, err = suiteAuditArgs(dir); err != nil {
			return nil, err
		}
	}
	cp.apiArgs = append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file=" + serving.Cert,
		"--tls-private-key-file=" + serving.Key,
		"--client-ca-file=" + ca.Path,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saPriv,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// default admission plugins; none of them needs a node. The
		// endpoint reconciler would only complain about a loopback address.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}, auditArgs...) // extraAPIServerArgs: only `e2e bench` sets them (its own audit policy)
	cp.APIServer, err = util.StartProc("kube-apiserver", cp.apiLogs, cp.apiBin, cp.apiArgs, nil)
	if err != nil {
		return nil, err
	}
	cp.AdminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.AdminKubeconfig, cp.APIURL, ca.Path, cp.Admin, "e2e-admin"); err != nil {
		return nil, err
	}
	if err := cp.startVIP(fmt.Sprintf("127.0.0.1:%d", apiPort)); err != nil {
		return nil, err
	}
	cp.WebhookKubeconfig = filepath.Join(dir, "admin-vip.kubeconfig")
	if err := writeKubeconfig(cp.WebhookKubeconfig, cp.VIP.URL(), ca.Path, cp.Admin, "e2e-admin"); err != nil {
		return nil, err
	}
	cp.Rest = &rest.Config{
		Host:            cp.APIURL,
		TLSClientConfig: rest.TLSClientConfig{CAFile: ca.Path, CertFile: cp.Admin.Cert, KeyFile: cp.Admin.Key},
		QPS:             100,
		Burst:           200,
		Timeout:         30 * time.Second,
	}
	if cp.Kube, err = kubernetes.NewForConfig(cp.Rest); err != nil {
		return nil, err
	}
	if cp.Dyn, err = dynamic.NewForConfig(cp.Rest); err != nil {
		return nil, err
	}
	if err := cp.waitAPIServerReady(); err != nil {
		return nil, err
	}
	v, err := cp.Kube.Discovery().ServerVersion()
	if err != nil {
		return nil, err
	}
	cp.GitVersion = v.GitVersion
	fmt.Sscanf(strings.TrimRight(v.Minor, "+"), "%d", &cp.Minor)
	util.Step("control plane: kube-apiserver %s ready", v.GitVersion)

	// kube-controller-manager
	kcmKubeconfig := filepath.Join(dir, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, cp.APIURL, ca.Path, kcmCert, "kube-controller-manager"); err != nil {
		return nil, err
	}
	util.Step("control plane: starting kube-controller-manager")
	cp.KCM, err = util.StartProc("kube-controller-manager", logs, filepath.Join(cfg.PeerDir, "kube-controller-manager"), []string{
		"--kubeconfig=" + kcmKubeconfig,
		"--authentication-kubeconfig=" + kcmKubeconfig,
		"--authorization-kubeconfig=" + kcmKubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", util.MustFreePort()),
		"--leader-elect=false",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + saPriv,
		"--root-ca-file=" + ca.Path,
		"--cluster-name=e2e",
		"--profiling=false",
		"--v=1",
	}, nil)
	if err != nil {
		return nil, err
	}
	// the service-account controller creating default/default shows the
	// controller manager is up and writing
	if err := waitFor(cfg.StartupWait, cp.KCM, "kube-controller-manager (default ServiceAccount)", func() error {
		_, err := cp.Kube.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("not yet")
		}
		return err
	}); err != nil {
		return nil, err
	}
	util.Step("control plane: kube-controller-manager ready")
	return cp, nil
}

// waitAPIServerReady waits until kube-apiserver's /readyz answers 200.
func (cp *ControlPlane) waitAPIServerReady() error {
	return waitFor(cp.startupWait, cp.APIServer, "kube-apiserver /readyz", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := cp.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v %s", err, b)
		}
		return nil
	})
}

// StartEtcd starts etcd (again, after StopEtcd: same flags, data and
// ports) and waits until its /health says true.
func (cp *ControlPlane) StartEtcd() error {
	util.Step("control plane: starting etcd on %s", cp.etcdURL)
	p, err := util.StartProc("etcd", cp.apiLogs, cp.etcdBin, cp.etcdArgs, nil)
	if err != nil {
		return err
	}
	cp.Etcd = p
	return waitFor(cp.startupWait, cp.Etcd, "etcd /health", func() error {
		resp, err := http.Get(cp.etcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `"true"`) {
			return fmt.Errorf("health: %s", b)
		}
		return nil
	})
}

// StopEtcd stops etcd (SIGTERM, then SIGKILL after 10 s); kube-apiserver
// and kube-controller-manager keep running against nothing.
func (cp *ControlPlane) StopEtcd() {
	util.Step("control plane: stopping etcd")
	cp.Etcd.Stop(10 * time.Second)
}

// APIServerReady waits until kube-apiserver's /readyz answers 200 again
// (after its etcd came back).
func (cp *ControlPlane) APIServerReady() error { return cp.waitAPIServerReady() }

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after 10 s);
// etcd and kube-controller-manager keep running.
func (cp *ControlPlane) StopAPIServer() {
	util.Step("control plane: stopping kube-apiserver")
	cp.APIServer.Stop(10 * time.Second)
}

// StartAPIServer starts kube-apiserver again with the same flags (same
// etcd, port and certificates) and waits until it is ready.
func (cp *ControlPlane) StartAPIServer() error {
	util.Step("control plane: starting kube-apiserver again on %s", cp.APIURL)
	p, err := util.StartProc("kube-apiserver", cp.apiLogs, cp.apiBin, cp.apiArgs, nil)
	if err != nil {
		return err
	}
	cp.APIServer = p
	return cp.waitAPIServerReady()
}

// SecondAPIServer starts another kube-apiserver on the same etcd, with the
// same flags and certificates on a new port (an HA control plane's second
// member). It returns admin clients for it and a stop function (SIGKILL).
func (cp *ControlPlane) SecondAPIServer() (*rest.Config, kubernetes.Interface, dynamic.Interface, func(), error) {
	return cp.SecondAPIServerWith("kube-apiserver-2", nil, nil)
}

// SecondAPIServerWith is SecondAPIServer under process name name, with the
// suite's flags less those starting with a prefix in drop, plus extra.
func (cp *ControlPlane) SecondAPIServerWith(name string, drop, extra []string) (*rest.Config, kubernetes.Interface, dynamic.Interface, func(), error) {
	port := util.MustFreePort()
	args := make([]string, 0, len(cp.apiArgs)+len(extra))
	for _, a := range cp.apiArgs {
		if strings.HasPrefix(a, "--secure-port=") {
			a = fmt.Sprintf("--secure-port=%d", port)
		}
		if hasAnyPrefix(a, drop) {
			continue
		}
		args = append(args, a)
	}
	args = append(args, extra...)
	util.Step("control plane: starting another kube-apiserver (%s) on port %d (same etcd)", name, port)
	p, err := util.StartProc(name, cp.apiLogs, cp.apiBin, args, nil)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	stop := func() { p.Kill() } // nothing to drain: the other member keeps serving
	rc := rest.CopyConfig(cp.Rest)
	rc.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
	k, err := kubernetes.NewForConfig(rc)
	if err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	d, err := dynamic.NewForConfig(rc)
	if err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	if err := waitFor(cp.startupWait, p, "second kube-apiserver /readyz", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := k.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v %s", err, b)
		}
		return nil
	}); err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	return rc, k, d, stop, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// KillAPIServer ends kube-apiserver with SIGKILL (a crash).
func (cp *ControlPlane) KillAPIServer() {
	util.Step("control plane: killing kube-apiserver (SIGKILL)")
	cp.APIServer.Kill()
}

// waitFor polls check until it succeeds, the timeout passes or p exits.
func waitFor(timeout time.Duration, p *util.Proc, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p != nil {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s exited (%v) while waiting for %s; log tail:\n%s", p.Name, err, what, p.Tail(3000))
			}
		}
		if last = check(); last == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	tail := ""
	if p != nil {
		tail = "; log tail:\n" + p.Tail(3000)
	}
	return fmt.Errorf("timed out after %v waiting for %s: %v%s", timeout, what, last, tail)
}

func writeKubeconfig(path, server, caFile string, c CertFiles, user string) error {
	s := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %s
current-context: e2e
`, server, caFile, user, c.Cert, c.Key, user)
	return os.WriteFile(path, []byte(s), 0o600)
}

// WaitControllerManagerCaughtUp waits until kube-controller-manager acts on
// new objects again after a kube-apiserver outage: its informers reconnect
// with client-go's backoff (0.8 s doubling to 30 s, jittered up to 2x), so
// for up to a minute after the API server is back a new StatefulSet gets no
// Pod. A canary StatefulSet (with a claim template, outside the webhook's
// scope: no Seldon owner) must get its Pod and a status that counts it;
// it is then deleted. Scenarios that restart kube-apiserver call this so
// the next scenario does not inherit the controller manager's backoff.
func (cp *ControlPlane) WaitControllerManagerCaughtUp(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	const ns = "default"
	name := fmt.Sprintf("kcm-canary-%d", t0.UnixNano()%1_000_000)
	labels := map[string]string{"app": name}
	one := int32(1)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &one,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "canary", Image: "harbor.test/canary:1"}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
				},
			}},
		},
	}
	apps := cp.Kube.AppsV1().StatefulSets(ns)
	if _, err := apps.Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("kube-controller-manager canary: %w", err)
	}
	defer func() {
		bg := metav1.DeletePropagationBackground
		_ = apps.Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg})
		_ = cp.Kube.CoreV1().Pods(ns).Delete(context.Background(), name+"-0", metav1.DeleteOptions{})
		_ = cp.Kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), "data-"+name+"-0", metav1.DeleteOptions{})
	}()
	err := util.Poll(timeout, func() error {
		if _, err := cp.Kube.CoreV1().Pods(ns).Get(ctx, name+"-0", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("no Pod yet: %w", err)
		}
		got, err := apps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation || got.Status.Replicas != 1 {
			return fmt.Errorf("status: observed generation %d of %d, %d replicas", got.Status.ObservedGeneration, got.Generation, got.Status.Replicas)
		}
		return nil
	})
	if err != nil {
		return time.Since(t0), fmt.Errorf("kube-controller-manager did not act on canary StatefulSet %s/%s within %v: %w", ns, name, timeout, err)
	}
	return time.Since(t0), nil
}

// ExtraAPIServerArgs are appended to kube-apiserver's flags
// (controlplane.go); only `e2e bench` sets them.
var ExtraAPIServerArgs []string

// APIServerMetrics is kube-apiserver's /metrics text, read as admin.
func (cp *ControlPlane) APIServerMetrics(ctx context.Context) (string, error) {
	b, err := cp.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	return string(b), err
}
