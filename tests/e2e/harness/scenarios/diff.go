package scenarios

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// JSONDiff compares two values through their JSON form and returns "" when
// equal, else a short list of differing paths.
func JSONDiff(a, b any) string {
	fa, fb := flatten(a), flatten(b)
	var diffs []string
	for k, va := range fa {
		if vb, ok := fb[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %s vs <absent>", k, va))
		} else if va != vb {
			diffs = append(diffs, fmt.Sprintf("%s: %s vs %s", k, va, vb))
		}
	}
	for k, vb := range fb {
		if _, ok := fa[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: <absent> vs %s", k, vb))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	n := len(diffs)
	if n > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("... %d more", n-8))
	}
	return strings.Join(diffs, "; ")
}

func flatten(v any) map[string]string {
	raw, err := json.Marshal(v)
	if err != nil {
		return map[string]string{"<error>": err.Error()}
	}
	var g any
	_ = json.Unmarshal(raw, &g)
	out := map[string]string{}
	var walk func(p string, x any)
	walk = func(p string, x any) {
		switch t := x.(type) {
		case map[string]any:
			if len(t) == 0 {
				return // empty map == absent
			}
			for k, v := range t {
				walk(p+"."+k, v)
			}
		case []any:
			if len(t) == 0 {
				return
			}
			for i, v := range t {
				walk(fmt.Sprintf("%s[%d]", p, i), v)
			}
		default:
			s, _ := json.Marshal(t)
			if len(s) > 80 {
				s = append(s[:77], "..."...)
			}
			out[p] = string(s)
		}
	}
	walk("", g)
	return out
}
