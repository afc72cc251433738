package standin

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"serverconfig-webhook/e2e/harness/k8s"
)

// The real controller's trace (tests/e2e/fixtures/controller-trace, taken
// from ../shared/seldon-oracle/controller-trace) and how a request body of
// it is compared with the stand-in's: both are kube-apiserver 1.33.13
// audit requestObjects (the body as decoded and defaulted, before any
// webhook mutation), so they are compared as JSON values after removing
// what differs between any two runs.

const traceDir = "tests/e2e/fixtures/controller-trace"

// TraceRecord is one line of records.jsonl (see its README).
type TraceRecord struct {
	Record          int               `json:"record"`
	FileLine        int               `json:"fileLine"`
	Time            string            `json:"time"`
	UserAgent       string            `json:"userAgent"`
	User            string            `json:"user"`
	Verb            string            `json:"verb"`
	Resource        string            `json:"resource"`
	Namespace       string            `json:"namespace"`
	Name            string            `json:"name"`
	Code            int               `json:"code"`
	Request         map[string]any    `json:"request"`
	ResponseMessage string            `json:"responseMessage"`
	WebhookMutated  bool              `json:"webhookMutated"`
	ResponseImages  map[string]string `json:"responseImages"`
	// RequestStatusIsStored: an Update's status was the stored one
	RequestStatusIsStored bool `json:"requestStatusIsStored"`
}

// LoadTrace reads the real controller's recorded requests, by record number.
func LoadTrace(repo string) (map[int]*TraceRecord, error) {
	f, err := os.Open(filepath.Join(repo, traceDir, "records.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[int]*TraceRecord{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r TraceRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, err
		}
		out[r.Record] = &r
	}
	return out, sc.Err()
}

// LoadTraceServers are the Servers the trace was recorded with.
func LoadTraceServers(repo string) ([]*unstructured.Unstructured, error) {
	return k8s.DecodeYAMLFile(filepath.Join(repo, traceDir, "servers.yaml"))
}

// lastAppliedForm tells how a seldon.io/last-applied value is encoded:
// "zip:<entry>" (objectmatcher's: base64 of a zip archive with one entry),
// "base64" or "raw".
func decodeLastApplied(v string) (form string, content []byte) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "raw", []byte(v)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(zr.File) != 1 {
		return "base64", b
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		return "base64", b
	}
	defer rc.Close()
	content, err = io.ReadAll(rc)
	if err != nil {
		return "base64", b
	}
	return "zip:" + zr.File[0].Name, content
}

// Comparable is a request body (or a last-applied object) with what differs
// between any two runs removed: uids, resourceVersions, generation,
// timestamps, managedFields; the namespace written as the trace's (canon
// maps the suite's namespaces to the trace's); for an Update the status
// (the stored status the controller copies in). The last-applied annotation
// is replaced by its encoding, its content returned decoded and made
// comparable the same way.
func Comparable(body map[string]any, canon map[string]string, update bool) (norm map[string]any, laForm string, la map[string]any, err error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, "", nil, err
	}
	if err := json.Unmarshal(b, &norm); err != nil {
		return nil, "", nil, err
	}
	strip := func(o map[string]any) {
		md, _ := o["metadata"].(map[string]any)
		for _, k := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"} {
			delete(md, k)
		}
		if ns, ok := md["namespace"].(string); ok && canon[ns] != "" {
			md["namespace"] = canon[ns]
		}
		refs, _ := md["ownerReferences"].([]any)
		for _, r := range refs {
			if rm, ok := r.(map[string]any); ok {
				delete(rm, "uid")
			}
		}
		if spec, ok := o["spec"].(map[string]any); ok {
			if tmpl, ok := spec["template"].(map[string]any); ok {
				if tm, ok := tmpl["metadata"].(map[string]any); ok {
					delete(tm, "creationTimestamp")
					if ns, ok := tm["namespace"].(string); ok && canon[ns] != "" {
						tm["namespace"] = canon[ns]
					}
				}
			}
			// a claim template's creationTimestamp is null in 1.33's audit
			// copy and absent in 1.35's: volatile either way
			vcts, _ := spec["volumeClaimTemplates"].([]any)
			for _, v := range vcts {
				if vm, ok := v.(map[string]any); ok {
					if vmd, ok := vm["metadata"].(map[string]any); ok {
						delete(vmd, "creationTimestamp")
					}
				}
			}
		}
		if update {
			delete(o, "status")
		}
	}
	strip(norm)
	md, _ := norm["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	if v, ok := ann[lastAppliedAnnotation].(string); ok {
		var content []byte
		laForm, content = decodeLastApplied(v)
		ann[lastAppliedAnnotation] = "<" + laForm + ">"
		if err := json.Unmarshal(content, &la); err != nil {
			return nil, "", nil, fmt.Errorf("last-applied content: %w", err)
		}
		strip(la)
	}
	return norm, laForm, la, nil
}

// UpdateStatusFacts checks, for an Update, what the comparison leaves out:
// the status it carries is the stored one (request status == response
// status: the API server ignores status on the main resource) and
// seldon.io/last-applied holds that same status.
func UpdateStatusFacts(request, response map[string]any) []string {
	var out []string
	if !reflect.DeepEqual(request["status"], response["status"]) {
		out = append(out, fmt.Sprintf("the Update's status %s is not the stored one %s", Short(request["status"]), Short(response["status"])))
	}
	md, _ := request["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	v, _ := ann[lastAppliedAnnotation].(string)
	_, content := decodeLastApplied(v)
	var la map[string]any
	_ = json.Unmarshal(content, &la)
	// the annotator drops nulls and empty values alike on both sides: compare as JSON
	a, _ := json.Marshal(la["status"])
	b, _ := json.Marshal(request["status"])
	var x, y any
	_ = json.Unmarshal(a, &x)
	_ = json.Unmarshal(b, &y)
	if !reflect.DeepEqual(x, y) {
		out = append(out, fmt.Sprintf("seldon.io/last-applied status %s, the Update's %s", Short(x), Short(y)))
	}
	return out
}

// JSONDifferences lists the paths where two JSON values differ (an empty
// object and an absent one differ here: the bodies must be the same).
func JSONDifferences(a, b any) []string {
	var out []string
	var walk func(p string, x, y any)
	walk = func(p string, x, y any) {
		if reflect.DeepEqual(x, y) {
			return
		}
		xm, xok := x.(map[string]any)
		ym, yok := y.(map[string]any)
		if xok && yok {
			keys := map[string]bool{}
			for k := range xm {
				keys[k] = true
			}
			for k := range ym {
				keys[k] = true
			}
			var ks []string
			for k := range keys {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			for _, k := range ks {
				xv, xin := xm[k]
				yv, yin := ym[k]
				switch {
				case !xin:
					out = append(out, fmt.Sprintf("%s.%s: absent in the trace, stand-in %s", p, k, Short(yv)))
				case !yin:
					out = append(out, fmt.Sprintf("%s.%s: trace %s, absent from the stand-in's", p, k, Short(xv)))
				default:
					walk(p+"."+k, xv, yv)
				}
			}
			return
		}
		xl, xok := x.([]any)
		yl, yok := y.([]any)
		if xok && yok && len(xl) == len(yl) {
			for i := range xl {
				walk(fmt.Sprintf("%s[%d]", p, i), xl[i], yl[i])
			}
			return
		}
		out = append(out, fmt.Sprintf("%s: trace %s, stand-in %s", p, Short(x), Short(y)))
	}
	walk("", a, b)
	return out
}

// Short is v as JSON, cut to 120 bytes, for a check's message.
func Short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:117]) + "..."
	}
	return string(b)
}
