package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Obj is one decoded Kubernetes object (JSON-shaped maps).
type Obj map[string]any

func (o Obj) Kind() string       { s, _ := o["kind"].(string); return s }
func (o Obj) APIVersion() string { s, _ := o["apiVersion"].(string); return s }
func (o Obj) Name() string       { return str(get(o, "metadata", "name")) }
func (o Obj) Namespace() string  { return str(get(o, "metadata", "namespace")) }
func (o Obj) Key() string {
	return fmt.Sprintf("%s %s %s/%s", o.APIVersion(), o.Kind(), o.Namespace(), o.Name())
}

// Doc is one YAML document of a multi-document stream, with its text.
type Doc struct {
	Text string
	Obj  Obj
}

// splitDocs splits a YAML stream at `---` lines, keeping each document's
// text (comments included); documents without an object are dropped.
func splitDocs(data []byte) ([]Doc, error) {
	var docs []Doc
	var cur []string
	flush := func() error {
		text := strings.Join(cur, "\n")
		cur = nil
		var o Obj
		if err := yaml.Unmarshal([]byte(text), &o); err != nil {
			return fmt.Errorf("%w in:\n%s", err, text)
		}
		if len(o) == 0 {
			return nil
		}
		docs = append(docs, Doc{Text: strings.Trim(text, "\n") + "\n", Obj: o})
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " ") == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, line)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

func loadObjs(path string) ([]Obj, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs, err := splitDocs(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]Obj, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.Obj)
	}
	return out, nil
}

func mustLoad(path string) []Obj {
	objs, err := loadObjs(path)
	if err != nil {
		die("%v", err)
	}
	return objs
}

func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(Obj); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case nil:
		return ""
	default:
		return fmt.Sprint(s)
	}
}

func list(v any) []any { l, _ := v.([]any); return l }

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, str(x))
	}
	return out
}

func byKind(objs []Obj, kind string) []Obj {
	var out []Obj
	for _, o := range objs {
		if o.Kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func find(objs []Obj, kind, ns, name string) Obj {
	for _, o := range objs {
		if o.Kind() == kind && o.Namespace() == ns && o.Name() == name {
			return o
		}
	}
	return nil
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
