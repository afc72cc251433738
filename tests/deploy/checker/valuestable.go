package main

// The chart README's values table is generated from values.schema.json
// (one row per described property: key, default from values.yaml,
// description from the schema), so the schema is the one source of the
// descriptions and the table cannot name a key the schema does not have, or
// miss one it has.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Markers around the generated table in the chart README.
const (
	tableBegin = "<!-- values-table:begin (generated from values.schema.json by tests/deploy/gen-values-table.sh; do not edit) -->"
	tableEnd   = "<!-- values-table:end -->"
)

// schemaNode is the part of a JSON Schema node the table needs.
type schemaNode struct {
	Description string      `json:"description"`
	Properties  schemaProps `json:"properties"`
}

// schemaProps keeps the properties in the schema's order (the table's order).
type schemaProps struct {
	keys  []string
	nodes map[string]*schemaNode
}

// UnmarshalJSON decodes a properties object, keeping its key order.
func (p *schemaProps) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("properties: want an object (%v)", err)
	}
	p.nodes = map[string]*schemaNode{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		var n schemaNode
		if err := dec.Decode(&n); err != nil {
			return fmt.Errorf("properties.%s: %w", key, err)
		}
		p.keys = append(p.keys, key)
		p.nodes[key] = &n
	}
	return nil
}

// valueRow is one documented key.
type valueRow struct {
	Key, Default, Description string
}

// schemaRows walks the schema's properties: a property with a description
// is one row (its own properties, if any, are its shape, not rows); one
// without must group described properties.
func schemaRows(prefix string, n *schemaNode, problems *[]string) []valueRow {
	var rows []valueRow
	for _, k := range n.Properties.keys {
		child, key := n.Properties.nodes[k], prefix+k
		switch {
		case child.Description != "":
			rows = append(rows, valueRow{Key: key, Description: child.Description})
		case len(child.Properties.keys) > 0:
			rows = append(rows, schemaRows(key+".", child, problems)...)
		default:
			*problems = append(*problems, key+": neither a description nor properties in the schema")
		}
	}
	return rows
}

// lookup finds a dotted key in the decoded values.yaml.
func lookup(values map[string]any, key string) (any, bool) {
	var cur any = values
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// valueLeaves lists the keys of values.yaml down to the rows' depth: a map
// is walked only where the schema groups properties without describing them.
func valueLeaves(prefix string, values map[string]any, documented map[string]bool) []string {
	var out []string
	for _, k := range sortedKeys(values) {
		key := prefix + k
		sub, isMap := values[k].(map[string]any)
		if documented[key] || !isMap {
			out = append(out, key)
			continue
		}
		out = append(out, valueLeaves(key+".", sub, documented)...)
	}
	return out
}

// formatDefault renders a default for the table: empty string as `""`,
// scalars as themselves, lists and maps as compact JSON.
func formatDefault(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		if x == "" {
			s = `""`
		} else {
			s = x
		}
	default:
		b, err := json.Marshal(x)
		if err != nil {
			s = fmt.Sprint(x)
		} else {
			s = string(b)
		}
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// renderTable is the markdown between the markers.
func renderTable(rows []valueRow) string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	for _, r := range rows {
		desc := strings.ReplaceAll(strings.Join(strings.Fields(r.Description), " "), "|", `\|`)
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.Key, r.Default, desc)
	}
	return b.String()
}

// buildValuesTable reads the schema and values.yaml, checks that both name
// the same keys, and returns the table and the problems found.
func buildValuesTable(schemaPath, valuesPath string) (string, []string) {
	sb, err := os.ReadFile(schemaPath)
	if err != nil {
		die("%v", err)
	}
	var root schemaNode
	if err := json.Unmarshal(sb, &root); err != nil {
		die("%s: %v", schemaPath, err)
	}
	vb, err := os.ReadFile(valuesPath)
	if err != nil {
		die("%v", err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(vb, &values); err != nil {
		die("%s: %v", valuesPath, err)
	}
	var problems []string
	rows := schemaRows("", &root, &problems)
	documented := map[string]bool{}
	for i, r := range rows {
		documented[r.Key] = true
		v, ok := lookup(values, r.Key)
		if !ok {
			problems = append(problems, r.Key+": in the schema, not in values.yaml (give it a default)")
			continue
		}
		rows[i].Default = formatDefault(v)
	}
	var extra []string
	for _, k := range valueLeaves("", values, documented) {
		if !documented[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		problems = append(problems, "in values.yaml, not described in the schema: "+strings.Join(extra, ", "))
	}
	return renderTable(rows), problems
}

// replaceTable swaps the block between the markers of readme for table.
func replaceTable(readme, table string) (string, error) {
	i := strings.Index(readme, tableBegin)
	j := strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q ... %q block", tableBegin, tableEnd)
	}
	return readme[:i] + tableBegin + "\n" + table + readme[j:], nil
}

// valuesTable checks (or, with write, rewrites) the chart README's table.
func valuesTable(schemaPath, valuesPath, readmePath string, write bool) {
	table, problems := buildValuesTable(schemaPath, valuesPath)
	check("values.schema.json and values.yaml name the same keys, each described", problems)
	rb, err := os.ReadFile(readmePath)
	if err != nil {
		die("%v", err)
	}
	want, err := replaceTable(string(rb), table)
	if err != nil {
		fail("chart README values table", "%s: %v", readmePath, err)
		return
	}
	if write {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			die("%v", err)
		}
		pass("chart README values table written from values.schema.json")
		return
	}
	if want != string(rb) {
		fail("chart README values table == generated from values.schema.json", "%s differs: run tests/deploy/gen-values-table.sh", readmePath)
		return
	}
	n := strings.Count(table, "\n") - 2
	pass(fmt.Sprintf("chart README values table == generated from values.schema.json (%d keys)", n))
}
