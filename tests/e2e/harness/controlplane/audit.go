package controlplane

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The suite's kube-apiserver writes an audit log (RequestResponse for
// writes of Server workloads and ServerConfigs, nothing else), so that
// scenarios can count what was written to the API server -- every write,
// including the no-op Updates a watch never sees -- and read the
// annotations the webhook adds to the audit entries.

const suiteAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: RequestResponse
    verbs: ["create", "update", "patch", "delete"]
    resources:
      - group: apps
        resources: ["statefulsets", "deployments", "statefulsets/status", "deployments/status"]
      - group: mlops.seldon.io
        resources: ["serverconfigs", "servers", "servers/status"]
  - level: None
`

// suiteAuditArgs writes the policy and returns kube-apiserver's audit flags
// and the log's path.
func suiteAuditArgs(dir string) ([]string, string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(suiteAuditPolicy), 0o644); err != nil {
		return nil, "", err
	}
	log := filepath.Join(dir, "logs", "audit.log")
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + log,
		"--audit-log-format=json",
		"--audit-log-maxbackup=0",
		"--audit-log-mode=blocking",
	}, log, nil
}

// AuditEvent is what the scenarios read of one audit log entry.
type AuditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	UserAgent  string `json:"userAgent"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject  json.RawMessage   `json:"requestObject"`
	ResponseObject json.RawMessage   `json:"responseObject"`
	StageTimestamp time.Time         `json:"stageTimestamp"`
	Annotations    map[string]string `json:"annotations"`
}

// DryRun tells whether the request was a dry run.
func (e AuditEvent) DryRun() bool { return strings.Contains(e.RequestURI, "dryRun=") }

// ResponseRV is the resourceVersion of the object the API server answered with.
func (e AuditEvent) ResponseRV() string {
	var o struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(e.ResponseObject, &o)
	return o.Metadata.ResourceVersion
}

// AuditEvents are the completed entries since `since` that match.
func (cp *ControlPlane) AuditEvents(since time.Time, match func(AuditEvent) bool) ([]AuditEvent, error) {
	if cp.AuditLog == "" {
		return nil, fmt.Errorf("the API server writes no audit log")
	}
	f, err := os.Open(cp.AuditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e AuditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Stage != "ResponseComplete" || e.StageTimestamp.Before(since) {
			continue
		}
		if match == nil || match(e) {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// WorkloadWrites counts, from the audit log, the writes (not dry runs) to
// the named workloads of a kind since `since`, and how many of them
// changed the object's resourceVersion (the first seen per object is
// compared with rv0, the resourceVersions at `since`). Status writes (the
// workload controllers') are not counted: they only move the
// resourceVersion a later write is compared with. last is each object's
// resourceVersion after the last write seen.
func (cp *ControlPlane) WorkloadWrites(since time.Time, resource, ns string, rv0 map[string]string) (writes, changes int, detail []string, last map[string]string, err error) {
	evs, err := cp.AuditEvents(since, func(e AuditEvent) bool {
		_, named := rv0[e.ObjectRef.Name]
		return e.ObjectRef.Resource == resource && e.ObjectRef.Namespace == ns && named &&
			(e.ObjectRef.Subresource == "" || e.ObjectRef.Subresource == "status") &&
			(e.Verb == "update" || e.Verb == "patch" || e.Verb == "create") && !e.DryRun()
	})
	if err != nil {
		return 0, 0, nil, nil, err
	}
	last = map[string]string{}
	for k, v := range rv0 {
		last[k] = v
	}
	for _, e := range evs {
		rv := e.ResponseRV()
		if e.ObjectRef.Subresource == "status" {
			if e.ResponseStatus.Code < 300 && rv != "" {
				last[e.ObjectRef.Name] = rv
			}
			continue
		}
		writes++
		who := e.UserAgent
		if i := strings.Index(who, " "); i > 0 {
			who = who[:i]
		}
		detail = append(detail, fmt.Sprintf("%s %s/%s by %s (%d, rv %s)", e.Verb, ns, e.ObjectRef.Name, who, e.ResponseStatus.Code, rv))
		if e.ResponseStatus.Code < 300 && rv != "" && rv != last[e.ObjectRef.Name] {
			changes++
			last[e.ObjectRef.Name] = rv
		}
	}
	return writes, changes, detail, last, nil
}
