package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
)

// libfaketime shifts a process's wall clock (LD_PRELOAD): the lease
// clock-skew scenario runs one webhook replica under it.

// LibFaketimeEnv names the variable that points the harness at
// libfaketime.so.1 when it is not in a distribution's usual place.
const LibFaketimeEnv = "SERVERCONFIG_E2E_LIBFAKETIME"

// LibFaketime finds libfaketime.so.1 (Debian/Ubuntu package faketime), or
// says how to get it.
func LibFaketime() (string, error) {
	if p := os.Getenv(LibFaketimeEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", LibFaketimeEnv, p, err)
		}
		return p, nil
	}
	for _, pattern := range []string{
		"/usr/lib/*/faketime/libfaketime.so.1",
		"/usr/lib/faketime/libfaketime.so.1",
		"/usr/local/lib/faketime/libfaketime.so.1",
	} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("libfaketime.so.1 is required (it skews one webhook replica's wall clock) but was not found: install it (Debian/Ubuntu: apt-get install faketime; .ci/run does as root) or set %s to its path", LibFaketimeEnv)
}

// FaketimeEnv is the environment that runs a process with its wall clock
// shifted by skew seconds and its monotonic clock left alone.
func FaketimeEnv(lib string, skew int) []string {
	return []string{
		"LD_PRELOAD=" + lib,
		fmt.Sprintf("FAKETIME=%+ds", skew),
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
	}
}

// WebhookKubeconfigAs writes a kubeconfig for the webhook (through the
// balancer, like WebhookKubeconfig) as its own user, in system:masters: the
// audit log then tells one replica's requests from another's.
func (cp *ControlPlane) WebhookKubeconfigAs(user string) (string, error) {
	pki := filepath.Join(cp.Dir, "pki")
	cert, err := cp.CA.Issue(pki, user, user, []string{"system:masters"}, nil)
	if err != nil {
		return "", err
	}
	path := filepath.Join(cp.Dir, user+".kubeconfig")
	return path, writeKubeconfig(path, cp.VIP.URL(), cp.CA.Path, cert, user)
}
