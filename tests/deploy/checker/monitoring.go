package main

// The monitoring objects of the chart against the real binary and promtool
// (`checker monitoring`, run by `cargo xtask monitoring`), and their shape in
// the rendered objects (checkMonitoringObjects, run by `checker objects`).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// dashboardKey is the ConfigMap key (and file name) of the dashboard.
const dashboardKey = "serverconfig-webhook.json"

// monitoringArgs are the inputs of `checker monitoring`.
type monitoringArgs struct {
	render, webhook, promtool, tests, runbook, dashboard, work string
}

func monitoring(a monitoringArgs) {
	objs := mustLoad(a.render)
	var p []string
	rule := one(objs, "PrometheusRule", &p)
	cm := one(objs, "ConfigMap", &p)
	if len(p) > 0 {
		check("monitoring objects rendered", p)
		return
	}
	rules := filepath.Join(a.work, "rules.yaml")
	writeRules(rule, rules)
	runTool("promtool check rules (the rendered PrometheusRule)", a.promtool, nil, "check", "rules", rules)
	tests := filepath.Join(a.work, filepath.Base(a.tests))
	copyFile(a.tests, tests)
	runTool("promtool test rules "+a.tests, a.promtool, nil, "test", "rules", tests)
	checkAlertTests(rule, a.tests)
	checkRunbookLinks(rule, a.runbook)

	scrape, err := scrapeWebhook(a.webhook, a.work)
	if err != nil {
		fail("scrape /metrics of serverconfig-webhook serve", "%v", err)
		return
	}
	pass(fmt.Sprintf("scrape /metrics of serverconfig-webhook serve (%d bytes)", len(scrape)))
	_ = os.WriteFile(filepath.Join(a.work, "metrics.txt"), scrape, 0o644)
	runTool("promtool check metrics (a scrape of serve, OpenMetrics counters named as Prometheus stores them)",
		a.promtool, classicText(scrape), "check", "metrics")
	exported := exportedNames(scrape)
	check(fmt.Sprintf("the scrape declares metric families (%d series names)", len(exported)),
		nonEmpty(len(exported) > 0, "no # TYPE line in the scrape"))
	checkRuleMetrics(rule, exported)
	checkDashboard(cm, a.dashboard, exported)
}

func nonEmpty(ok bool, why string) []string {
	if ok {
		return nil
	}
	return []string{why}
}

// writeRules writes the PrometheusRule's spec (its `groups`) as a rules file.
func writeRules(rule Obj, path string) {
	b, err := yaml.Marshal(get(rule, "spec"))
	if err != nil {
		die("rules: %v", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		die("%v", err)
	}
}

func copyFile(from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		die("%v", err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		die("%v", err)
	}
}

// runTool runs a program as one check: PASS on exit 0, else FAIL with its output.
func runTool(name, program string, stdin []byte, args ...string) {
	cmd := exec.Command(program, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		fail(name, "%v:\n%s", err, strings.TrimSpace(string(out)))
		return
	}
	pass(name)
}

// alertRules are the rendered alerting rules: name -> expression.
func alertRules(rule Obj) (names []string, exprs map[string]string, annotations map[string]map[string]any) {
	exprs = map[string]string{}
	annotations = map[string]map[string]any{}
	for _, g := range list(get(rule, "spec", "groups")) {
		for _, r := range list(get(g, "rules")) {
			name := str(get(r, "alert"))
			if name == "" {
				name = str(get(r, "record"))
			} else {
				names = append(names, name)
			}
			exprs[name] = str(get(r, "expr"))
			a, _ := get(r, "annotations").(map[string]any)
			annotations[name] = a
		}
	}
	return names, exprs, annotations
}

// checkAlertTests: the promtool tests fire every alert at least once and
// hold it silent at least once (an alert test with no expected alerts).
func checkAlertTests(rule Obj, testsPath string) {
	b, err := os.ReadFile(testsPath)
	if err != nil {
		die("%v", err)
	}
	var tf struct {
		Tests []struct {
			AlertRuleTests []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		die("%s: %v", testsPath, err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, t := range tf.Tests {
		for _, a := range t.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	names, _, _ := alertRules(rule)
	var p []string
	for _, n := range names {
		if !fires[n] {
			p = append(p, n+" is never expected to fire")
		}
		if !silent[n] {
			p = append(p, n+" is never expected to stay silent")
		}
	}
	for n := range fires {
		if !slices.Contains(names, n) {
			p = append(p, n+" is tested but not rendered")
		}
	}
	check(fmt.Sprintf("%s: each of the %d alerts fires in one test and stays silent in another", testsPath, len(names)), p)
}

// checkRunbookLinks: every alert links to a section of docs/runbook.md
// (GitHub's anchor of a heading: lower case, spaces to dashes).
func checkRunbookLinks(rule Obj, runbookPath string) {
	b, err := os.ReadFile(runbookPath)
	if err != nil {
		die("%v", err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[githubAnchor(h)] = true
		}
	}
	names, _, ann := alertRules(rule)
	var p []string
	for _, n := range names {
		url := str(ann[n]["runbook_url"])
		_, anchor, ok := strings.Cut(url, "#")
		if !ok || !strings.HasSuffix(strings.SplitN(url, "#", 2)[0], "docs/runbook.md") {
			p = append(p, fmt.Sprintf("%s: runbook_url %q is not docs/runbook.md#<section>", n, url))
			continue
		}
		if !anchors[anchor] {
			p = append(p, fmt.Sprintf("%s: %s has no section #%s", n, runbookPath, anchor))
		}
		for _, k := range []string{"summary", "description"} {
			if str(ann[n][k]) == "" {
				p = append(p, n+" has no "+k)
			}
		}
	}
	check("every alert has a summary, a description and a runbook_url to its section of "+runbookPath, p)
}

var nonAnchor = regexp.MustCompile(`[^a-z0-9 _-]`)

func githubAnchor(heading string) string {
	h := nonAnchor.ReplaceAllString(strings.ToLower(strings.TrimSpace(heading)), "")
	return strings.ReplaceAll(h, " ", "-")
}

// scrapeWebhook runs `serve` with a fresh certificate (`certs`) and a
// kubeconfig that points at no API server, and returns one /metrics body.
func scrapeWebhook(bin, work string) ([]byte, error) {
	dir := filepath.Join(work, "serve")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "certs", "--dns", "localhost", "--out", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("certs: %v: %s", err, out)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	const kc = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	webhookPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve",
		"--listen-addr", fmt.Sprintf("127.0.0.1:%d", webhookPort),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--tls-cert-file", filepath.Join(dir, "tls.crt"),
		"--tls-key-file", filepath.Join(dir, "tls.key"),
		"--sync", "--shutdown-delay", "0s", "--log-format", "text")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "RUST_LOG=warn")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var buf bytes.Buffer
			_, rerr := buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return buf.Bytes(), nil
			}
			err = fmt.Errorf("status %d, %v", resp.StatusCode, rerr)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("GET %s: %v; serve said: %s", url, err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var typeLine = regexp.MustCompile(`^# TYPE (\S+) (\S+)$`)

// typedFamilies reads the `# TYPE` lines of an exposition: family -> type.
func typedFamilies(text []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		if m := typeLine.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

// exportedNames: the series names the scrape's families produce, as
// Prometheus stores them (OpenMetrics: a counter family X is series
// X_total; a histogram X is X_bucket, X_sum and X_count).
func exportedNames(text []byte) map[string]bool {
	out := map[string]bool{}
	for fam, typ := range typedFamilies(text) {
		switch typ {
		case "counter":
			out[fam+"_total"] = true
		case "histogram":
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[fam+s] = true
			}
		default:
			out[fam] = true
		}
	}
	return out
}

// classicText turns the OpenMetrics scrape into the classic text format
// promtool's linter reads: a counter's HELP and TYPE lines name its samples
// (X_total), and the `# EOF` marker goes. Samples are left as they are.
func classicText(text []byte) []byte {
	types := typedFamilies(text)
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "# EOF" {
			continue
		}
		for _, kw := range []string{"# HELP ", "# TYPE "} {
			if rest, ok := strings.CutPrefix(line, kw); ok {
				name, tail, _ := strings.Cut(rest, " ")
				if types[name] == "counter" {
					line = kw + name + "_total " + tail
				}
			}
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes()
}

// metricNames parses a PromQL expression and returns the metric names its
// selectors name; a selector without a plain name is an error.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if m.Type != labels.MatchEqual {
					bad = fmt.Errorf("selector %s does not name one metric", vs)
				}
				name = m.Value
			}
		}
		if name == "" {
			bad = fmt.Errorf("selector %s names no metric", vs)
		}
		names = append(names, name)
		return nil
	})
	return names, bad
}

// unexported: the names of expr that the scrape does not export.
func unexported(what, expr string, exported map[string]bool) []string {
	names, err := metricNames(expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", what, err)}
	}
	var p []string
	for _, n := range names {
		if !exported[n] {
			p = append(p, fmt.Sprintf("%s names %s, which serve does not export", what, n))
		}
	}
	if len(names) == 0 {
		p = append(p, what+" names no metric")
	}
	return p
}

// checkRuleMetrics: every metric a rule names is in the scrape.
func checkRuleMetrics(rule Obj, exported map[string]bool) {
	_, exprs, _ := alertRules(rule)
	var p []string
	for _, n := range sortedKeys(exprs) {
		p = append(p, unexported(n, exprs[n], exported)...)
	}
	check(fmt.Sprintf("every metric the %d rules name is one serve exports (HELP/TYPE of the scrape)", len(exprs)), p)
}

var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// grafanaExpr replaces Grafana's variables with values PromQL parses.
func grafanaExpr(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}") {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		return "x"
	})
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// checkDashboard: the ConfigMap carries the chart's dashboard file, and
// every query of its panels and variables names metrics serve exports.
func checkDashboard(cm Obj, path string, exported map[string]bool) {
	file, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	var p []string
	if strings.TrimSpace(str(get(cm, "data", dashboardKey))) != strings.TrimSpace(string(file)) {
		p = append(p, fmt.Sprintf("ConfigMap %s data[%s] is not %s", cm.Name(), dashboardKey, path))
	}
	check("the dashboard ConfigMap carries "+path, p)

	var dash map[string]any
	if err := json.Unmarshal(file, &dash); err != nil {
		fail("dashboard JSON parses", "%v", err)
		return
	}
	p = nil
	queries := 0
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, pn := range panels {
			title := str(get(pn, "title"))
			if str(get(pn, "type")) == "row" {
				walk(list(get(pn, "panels")))
				continue
			}
			targets := list(get(pn, "targets"))
			if len(targets) == 0 {
				p = append(p, fmt.Sprintf("panel %q has no query", title))
			}
			for _, t := range targets {
				queries++
				p = append(p, unexported(fmt.Sprintf("panel %q %s", title, str(get(t, "refId"))),
					grafanaExpr(str(get(t, "expr"))), exported)...)
			}
		}
	}
	walk(list(get(dash, "panels")))
	for _, v := range list(get(dash, "templating", "list")) {
		if str(get(v, "type")) != "query" {
			continue
		}
		q := str(get(v, "query", "query"))
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			p = append(p, fmt.Sprintf("variable %s: query %q is not label_values(<selector>, <label>)", str(get(v, "name")), q))
			continue
		}
		queries++
		p = append(p, unexported("variable "+str(get(v, "name")), grafanaExpr(m[1]), exported)...)
	}
	check(fmt.Sprintf("every metric the %d dashboard queries name is one serve exports", queries), p)
}

// checkMonitoringObjects: the shape of the ServiceMonitor, PrometheusRule and
// dashboard ConfigMap in a render with monitoring on (with
// webhook.timeoutSeconds=7 and sync on), and their absence by default.
func checkMonitoringObjects(def, mon []Obj) {
	var p []string
	for _, k := range []string{"ServiceMonitor", "PrometheusRule"} {
		if n := len(byKind(def, k)); n != 0 {
			p = append(p, fmt.Sprintf("default values render %d %s", n, k))
		}
	}
	if n := len(byKind(def, "ConfigMap")); n != 0 {
		p = append(p, fmt.Sprintf("default values render %d ConfigMap", n))
	}
	check("default: no ServiceMonitor, PrometheusRule or dashboard ConfigMap (monitoring is off by default)", p)

	p = nil
	checkLabels("monitoring", mon)
	sm := one(mon, "ServiceMonitor", &p)
	svc := one(mon, "Service", &p)
	if len(p) == 0 {
		sel, _ := get(sm, "spec", "selector", "matchLabels").(map[string]any)
		svcLabels, _ := get(svc, "metadata", "labels").(map[string]any)
		for k, v := range sel {
			if svcLabels[k] != v {
				p = append(p, fmt.Sprintf("ServiceMonitor selector %s=%v does not match the Service", k, v))
			}
		}
		if len(sel) == 0 {
			p = append(p, "ServiceMonitor selects nothing")
		}
		expect(&p, "ServiceMonitor namespaceSelector", get(sm, "spec", "namespaceSelector", "matchNames"), []any{releaseNS})
		eps := list(get(sm, "spec", "endpoints"))
		port := str(get(eps, 0, "port"))
		found := false
		for _, sp := range list(get(svc, "spec", "ports")) {
			found = found || str(get(sp, "name")) == port
		}
		if len(eps) != 1 || !found {
			p = append(p, fmt.Sprintf("ServiceMonitor endpoint port %q is not a port of Service %s", port, svc.Name()))
		}
		expect(&p, "ServiceMonitor endpoint path", get(eps, 0, "path"), "/metrics")
		expect(&p, "ServiceMonitor endpoint interval", get(eps, 0, "interval"), "30s")
		expect(&p, "ServiceMonitor extra label", get(sm, "metadata", "labels", "release"), "prom")
	}
	check("monitoring: the ServiceMonitor scrapes the metrics port of the release's Service", p)

	p = nil
	rule := one(mon, "PrometheusRule", &p)
	if len(p) == 0 {
		names, exprs, _ := alertRules(rule)
		sel := fmt.Sprintf(`job="%s", namespace="%s"`, svc.Name(), releaseNS)
		for _, n := range names {
			if !strings.Contains(exprs[n], sel) {
				p = append(p, fmt.Sprintf("%s does not select %s (the ServiceMonitor's job and namespace)", n, sel))
			}
		}
		if !strings.Contains(exprs["ServerConfigWebhookLatencyNearTimeout"], "> 0.8 * 7") {
			p = append(p, "ServerConfigWebhookLatencyNearTimeout does not follow webhook.timeoutSeconds=7: "+exprs["ServerConfigWebhookLatencyNearTimeout"])
		}
		// certManager.serving.renewBefore=720h in seconds
		if !strings.Contains(exprs["ServerConfigWebhookCertificateExpiring"], "< 2592000") {
			p = append(p, "ServerConfigWebhookCertificateExpiring does not follow certManager.serving.renewBefore=720h: "+exprs["ServerConfigWebhookCertificateExpiring"])
		}
		if !slices.Contains(names, "ServerConfigWebhookNoLeader") {
			p = append(p, "no ServerConfigWebhookNoLeader with sync.enabled")
		}
		expect(&p, "PrometheusRule extra label", get(rule, "metadata", "labels", "release"), "prom")
	}
	check("monitoring: the PrometheusRule selects the scraped series; thresholds follow timeoutSeconds and renewBefore", p)

	p = nil
	cm := one(mon, "ConfigMap", &p)
	if len(p) == 0 {
		expect(&p, "dashboard ConfigMap label grafana_dashboard", get(cm, "metadata", "labels", "grafana_dashboard"), "1")
		expect(&p, "dashboard ConfigMap namespace", cm.Namespace(), "grafana")
		var d map[string]any
		if err := json.Unmarshal([]byte(str(get(cm, "data", dashboardKey))), &d); err != nil {
			p = append(p, "data["+dashboardKey+"] is not JSON: "+err.Error())
		}
	}
	check("monitoring: the dashboard ConfigMap carries the sidecar label, the chosen namespace and the dashboard JSON", p)
}
