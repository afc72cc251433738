// Command mergo-oracle merges pod specs the way Seldon Core 2.9.1's
// MergePodSpecs, MergeContainers and updateCapabilities do, with the real
// dario.cat/mergo v1.0.0 and the real k8s.io/api types, so the Rust port
// can be checked against the library it imitates. (The Seldon operator
// module itself is not served by the module proxy here; these few lines
// restate its call pattern: same options, same order, same types.)
//
// Input on stdin: a JSON list of cases
//   {"name", "serverConfig": <PodSpec>, "override": <PodSpec or null>,
//    "capabilities": [..], "extraCapabilities": [..]}
// Output on stdout: a JSON list of {"name", "podSpec"} or {"name", "error"}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"dario.cat/mergo"
	v1 "k8s.io/api/core/v1"
)

// seldonPodSpecFields are the JSON fields of Seldon's v1alpha1.PodSpec; its
// ToV1PodSpec round-trips through JSON, so other fields are dropped.
var seldonPodSpecFields = map[string]bool{
	"volumes": true, "initContainers": true, "containers": true, "restartPolicy": true,
	"terminationGracePeriodSeconds": true, "activeDeadlineSeconds": true, "dnsPolicy": true,
	"nodeSelector": true, "serviceAccountName": true, "automountServiceAccountToken": true,
	"nodeName": true, "hostNetwork": true, "hostPID": true, "hostIPC": true,
	"shareProcessNamespace": true, "securityContext": true, "imagePullSecrets": true,
	"hostname": true, "subdomain": true, "affinity": true, "schedulerName": true,
	"tolerations": true, "hostAliases": true, "priorityClassName": true, "priority": true,
	"dnsConfig": true, "readinessGates": true, "runtimeClassName": true,
	"enableServiceLinks": true, "preemptionPolicy": true, "overhead": true,
	"topologySpreadConstraints": true, "setHostnameAsFQDN": true,
}

type input struct {
	Name              string          `json:"name"`
	ServerConfig      v1.PodSpec      `json:"serverConfig"`
	Override          json.RawMessage `json:"override"`
	Capabilities      []string        `json:"capabilities"`
	ExtraCapabilities []string        `json:"extraCapabilities"`
}

type output struct {
	Name    string      `json:"name"`
	PodSpec *v1.PodSpec `json:"podSpec,omitempty"`
	Error   string      `json:"error,omitempty"`
}

func toV1(raw json.RawMessage) (*v1.PodSpec, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	for k := range m {
		if !seldonPodSpecFields[k] {
			delete(m, k)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var ps v1.PodSpec
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, err
	}
	return &ps, nil
}

func mergeContainers(existing []v1.Container, overrides []v1.Container) ([]v1.Container, error) {
	var out []v1.Container
	for _, o := range overrides {
		found := false
		for _, e := range existing {
			if o.Name == e.Name {
				found = true
				if err := mergo.Merge(&e, o, mergo.WithOverride, mergo.WithAppendSlice); err != nil {
					return nil, err
				}
				out = append(out, e)
			}
		}
		if !found {
			out = append(out, o)
		}
	}
	for _, e := range existing {
		found := false
		for _, o := range overrides {
			if e.Name == o.Name {
				found = true
			}
		}
		if !found {
			out = append(out, e)
		}
	}
	return out, nil
}

func mergePodSpecs(sc *v1.PodSpec, override *v1.PodSpec) (*v1.PodSpec, error) {
	dst := sc.DeepCopy()
	if override == nil {
		return dst, nil
	}
	if err := mergo.Merge(dst, override, mergo.WithOverride, mergo.WithAppendSlice); err != nil {
		return nil, err
	}
	cs, err := mergeContainers(sc.Containers, override.Containers)
	if err != nil {
		return nil, err
	}
	dst.Containers = cs
	return dst, nil
}

func updateCapabilities(caps, extra []string, ps *v1.PodSpec) {
	if len(caps) == 0 && len(extra) == 0 {
		return
	}
	for _, c := range ps.Containers {
		for i, e := range c.Env {
			if e.Name != "SELDON_SERVER_CAPABILITIES" {
				continue
			}
			if len(caps) > 0 {
				c.Env[i] = v1.EnvVar{Name: e.Name, Value: strings.Join(caps, ",")}
			} else {
				c.Env[i] = v1.EnvVar{Name: e.Name, Value: fmt.Sprintf("%s,%s", e.Value, strings.Join(extra, ","))}
			}
		}
	}
}

func main() {
	var cases []input
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintf(os.Stderr, "mergo-oracle: bad input: %v\n", err)
		os.Exit(2)
	}
	var outs []output
	for _, c := range cases {
		override, err := toV1(c.Override)
		if err != nil {
			outs = append(outs, output{Name: c.Name, Error: err.Error()})
			continue
		}
		ps, err := mergePodSpecs(&c.ServerConfig, override)
		if err != nil {
			outs = append(outs, output{Name: c.Name, Error: err.Error()})
			continue
		}
		updateCapabilities(c.Capabilities, c.ExtraCapabilities, ps)
		outs = append(outs, output{Name: c.Name, PodSpec: ps})
	}
	if err := json.NewEncoder(os.Stdout).Encode(outs); err != nil {
		fmt.Fprintf(os.Stderr, "mergo-oracle: %v\n", err)
		os.Exit(1)
	}
}
