package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	releaseNS = "serverconfig-webhook-system"
	fullname  = "serverconfig-webhook"
	ctlNS     = "seldon-system"
	saUser    = "system:serviceaccount:" + releaseNS + ":" + fullname
)

func objects(defPath, scopedPath, kustPath, valuesPath, readmePath, matrixPath string) {
	def := mustLoad(defPath)
	scoped := mustLoad(scopedPath)

	if kustPath != "" {
		checkSameObjects("kustomize build deploy/kustomize == helm template (default values)", def, mustLoad(kustPath))
	}
	for _, c := range []struct {
		name   string
		objs   []Obj
		scoped bool
	}{{"default", def, false}, {"scoped", scoped, true}} {
		checkLabels(c.name, c.objs)
		checkWebhook(c.name, c.objs, c.scoped)
		checkDeployment(c.name, c.objs, c.scoped)
		checkTLS(c.name, c.objs, c.scoped)
		checkNetworkPolicy(c.name, c.objs, c.scoped)
		checkRBACRules(c.name, c.objs)
		checkGuard(c.name, c.objs)
	}
	checkMatchConditionCEL(def)
	if matrixPath != "" {
		checkMatrix(matrixPath, map[string][]Obj{"default": def, "scoped": scoped})
	}
	if valuesPath != "" && readmePath != "" {
		checkValuesDocumented(valuesPath, readmePath)
	}
}

// normalize round-trips through JSON so YAML ints and floats compare equal.
func normalize(o Obj) any {
	b, _ := json.Marshal(o)
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

func checkSameObjects(name string, want, got []Obj) {
	var problems []string
	w := map[string]Obj{}
	for _, o := range want {
		w[o.Key()] = o
	}
	g := map[string]Obj{}
	for _, o := range got {
		g[o.Key()] = o
	}
	for _, k := range sortedKeys(w) {
		if _, ok := g[k]; !ok {
			problems = append(problems, "missing "+k)
		} else if !reflect.DeepEqual(normalize(w[k]), normalize(g[k])) {
			a, _ := yaml.Marshal(w[k])
			b, _ := yaml.Marshal(g[k])
			problems = append(problems, fmt.Sprintf("%s differs:\n--- helm\n%s--- kustomize\n%s", k, a, b))
		}
	}
	for _, k := range sortedKeys(g) {
		if _, ok := w[k]; !ok {
			problems = append(problems, "extra "+k)
		}
	}
	if len(problems) == 0 && len(want) == 0 {
		problems = append(problems, "no objects")
	}
	check(name, problems)
}

func checkLabels(mode string, objs []Obj) {
	var p []string
	for _, o := range objs {
		l, _ := get(o, "metadata", "labels").(map[string]any)
		if str(l["app.kubernetes.io/name"]) != "serverconfig-webhook" || str(l["app.kubernetes.io/part-of"]) == "" {
			p = append(p, o.Key()+" lacks app.kubernetes.io/name=serverconfig-webhook or part-of")
		}
		if _, ok := l["app.kubernetes.io/managed-by"]; ok {
			p = append(p, o.Key()+" carries app.kubernetes.io/managed-by (reserved for objects the webhook owns)")
		}
		if o.Kind() != "Namespace" && !clusterScoped(o.Kind()) && o.Namespace() == "" {
			p = append(p, o.Key()+" has no namespace")
		}
	}
	check(mode+": labels and namespaces of every object", p)
}

func clusterScoped(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Namespace":
		return true
	}
	return false
}

func one(objs []Obj, kind string, p *[]string) Obj {
	l := byKind(objs, kind)
	if len(l) != 1 {
		*p = append(*p, fmt.Sprintf("want 1 %s, got %d", kind, len(l)))
		if len(l) == 0 {
			return Obj{}
		}
	}
	return l[0]
}

func expect(p *[]string, what string, got, want any) {
	if !reflect.DeepEqual(normalizeAny(got), normalizeAny(want)) {
		*p = append(*p, fmt.Sprintf("%s = %v, want %v", what, got, want))
	}
}

func normalizeAny(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func checkWebhook(mode string, objs []Obj, scoped bool) {
	var p []string
	mwc := one(objs, "MutatingWebhookConfiguration", &p)
	hooks := list(mwc["webhooks"])
	if len(hooks) != 1 {
		p = append(p, fmt.Sprintf("want 1 webhook, got %d", len(hooks)))
		check(mode+": MutatingWebhookConfiguration", p)
		return
	}
	h := hooks[0]
	expect(&p, "admissionReviewVersions", get(h, "admissionReviewVersions"), []string{"v1"})
	expect(&p, "failurePolicy", get(h, "failurePolicy"), "Fail")
	expect(&p, "sideEffects", get(h, "sideEffects"), "None")
	expect(&p, "timeoutSeconds", get(h, "timeoutSeconds"), 5)
	expect(&p, "matchPolicy", get(h, "matchPolicy"), "Equivalent")
	expect(&p, "reinvocationPolicy", get(h, "reinvocationPolicy"), "IfNeeded")
	expect(&p, "rules", get(h, "rules"), []any{map[string]any{
		"apiGroups": []string{"apps"}, "apiVersions": []string{"v1"},
		"resources":  []string{"statefulsets", "deployments"},
		"operations": []string{"CREATE", "UPDATE"}, "scope": "Namespaced"}})
	if len(list(get(h, "matchConditions"))) == 0 {
		p = append(p, "no matchConditions")
	}
	// clientConfig points at the Service port that targets the webhook port.
	svc := find(objs, "Service", releaseNS, str(get(h, "clientConfig", "service", "name")))
	if svc == nil || str(get(h, "clientConfig", "service", "namespace")) != releaseNS {
		p = append(p, "clientConfig.service does not name the rendered Service")
	} else {
		expect(&p, "clientConfig.service.path", get(h, "clientConfig", "service", "path"), "/mutate")
		port := get(h, "clientConfig", "service", "port")
		ok := false
		for _, sp := range list(get(svc, "spec", "ports")) {
			if reflect.DeepEqual(normalizeAny(get(sp, "port")), normalizeAny(port)) && str(get(sp, "targetPort")) == "https" {
				ok = true
			}
		}
		if !ok {
			p = append(p, fmt.Sprintf("Service has no port %v -> https", port))
		}
	}
	// namespaceSelector: always NotIn the excluded, In the watched when scoped.
	var in, notIn []string
	for _, e := range list(get(h, "namespaceSelector", "matchExpressions")) {
		if str(get(e, "key")) != "kubernetes.io/metadata.name" {
			p = append(p, "unexpected namespaceSelector key "+str(get(e, "key")))
		}
		switch str(get(e, "operator")) {
		case "In":
			in = strs(get(e, "values"))
		case "NotIn":
			notIn = strs(get(e, "values"))
		}
	}
	for _, ns := range []string{"kube-system", releaseNS, ctlNS} {
		if !slices.Contains(notIn, ns) {
			p = append(p, "namespaceSelector does not exclude "+ns)
		}
	}
	if scoped {
		expect(&p, "namespaceSelector In", in, []string{"team-a", "team-b"})
	} else if in != nil {
		p = append(p, "default install has a namespaceSelector In")
	}
	// CA: injected by cert-manager, or given.
	ann := str(get(mwc, "metadata", "annotations", "cert-manager.io/inject-ca-from"))
	ca := str(get(h, "clientConfig", "caBundle"))
	if scoped {
		if ann != "" || ca == "" {
			p = append(p, "without cert-manager: want caBundle and no inject-ca-from")
		}
	} else {
		if ca != "" {
			p = append(p, "with cert-manager: caBundle must be left to the cainjector")
		}
		parts := strings.SplitN(ann, "/", 2)
		if len(parts) != 2 || find(objs, "Certificate", parts[0], parts[1]) == nil {
			p = append(p, fmt.Sprintf("inject-ca-from %q does not name a rendered Certificate", ann))
		}
	}
	check(mode+": MutatingWebhookConfiguration", p)
}

func containerArgs(c any) []string { return strs(get(c, "args")) }

func checkDeployment(mode string, objs []Obj, scoped bool) {
	var p []string
	d := one(objs, "Deployment", &p)
	expect(&p, "replicas", get(d, "spec", "replicas"), 2)
	pod := get(d, "spec", "template", "spec")
	psc := get(pod, "securityContext")
	expect(&p, "pod runAsNonRoot", get(psc, "runAsNonRoot"), true)
	expect(&p, "pod runAsUser", get(psc, "runAsUser"), 65532)
	expect(&p, "pod seccompProfile", get(psc, "seccompProfile", "type"), "RuntimeDefault")
	if str(get(pod, "hostNetwork")) == "true" || str(get(pod, "hostPID")) == "true" {
		p = append(p, "host namespaces")
	}
	term := get(pod, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "podAffinityTerm")
	expect(&p, "anti-affinity topologyKey", get(term, "topologyKey"), "kubernetes.io/hostname")
	expect(&p, "anti-affinity selector", get(term, "labelSelector", "matchLabels"), get(d, "spec", "selector", "matchLabels"))
	cs := list(get(pod, "containers"))
	if len(cs) != 1 {
		p = append(p, fmt.Sprintf("want 1 container, got %d", len(cs)))
		check(mode+": Deployment", p)
		return
	}
	c := cs[0]
	sc := get(c, "securityContext")
	expect(&p, "readOnlyRootFilesystem", get(sc, "readOnlyRootFilesystem"), true)
	expect(&p, "allowPrivilegeEscalation", get(sc, "allowPrivilegeEscalation"), false)
	expect(&p, "capabilities.drop", get(sc, "capabilities", "drop"), []string{"ALL"})
	expect(&p, "container runAsUser", get(sc, "runAsUser"), 65532)
	if get(sc, "privileged") == true || get(sc, "capabilities", "add") != nil {
		p = append(p, "privileged or added capabilities")
	}
	args := containerArgs(c)
	for _, want := range []string{"--sync", "--controller-namespace=seldon-system",
		"--tls-cert-file=/etc/serverconfig-webhook/tls/tls.crt", "--tls-key-file=/etc/serverconfig-webhook/tls/tls.key",
		"--listen-addr=0.0.0.0:8443", "--metrics-addr=0.0.0.0:9090"} {
		if !slices.Contains(args, want) {
			p = append(p, "args lack "+want)
		}
	}
	if slices.Contains(args, "serve") {
		p = append(p, "args repeat `serve` (the image's ENTRYPOINT has it)")
	}
	hasWatch := slices.Contains(args, "--watch-namespaces=team-a,team-b")
	if hasWatch != scoped {
		p = append(p, fmt.Sprintf("--watch-namespaces=team-a,team-b present=%v", hasWatch))
	}
	env := map[string]string{}
	for _, e := range list(get(c, "env")) {
		env[str(get(e, "name"))] = str(get(e, "valueFrom", "fieldRef", "fieldPath"))
	}
	expect(&p, "env POD_NAME", env["POD_NAME"], "metadata.name")
	expect(&p, "env POD_NAMESPACE", env["POD_NAMESPACE"], "metadata.namespace")
	ports := map[string]any{}
	for _, cp := range list(get(c, "ports")) {
		ports[str(get(cp, "name"))] = get(cp, "containerPort")
	}
	expect(&p, "container ports", ports, map[string]any{"https": 8443, "metrics": 9090})
	expect(&p, "liveness", []any{get(c, "livenessProbe", "httpGet", "path"), get(c, "livenessProbe", "httpGet", "port")}, []any{"/healthz", "metrics"})
	expect(&p, "readiness", []any{get(c, "readinessProbe", "httpGet", "path"), get(c, "readinessProbe", "httpGet", "port")}, []any{"/readyz", "metrics"})
	expect(&p, "resources", get(c, "resources"), map[string]any{
		"requests": map[string]any{"cpu": "100m", "memory": "192Mi"}, "limits": map[string]any{"memory": "512Mi"}})
	var mount string
	for _, m := range list(get(c, "volumeMounts")) {
		if str(get(m, "mountPath")) == "/etc/serverconfig-webhook/tls" {
			mount = str(get(m, "name"))
		}
	}
	var secret string
	for _, v := range list(get(pod, "volumes")) {
		if str(get(v, "name")) == mount {
			secret = str(get(v, "secret", "secretName"))
		}
	}
	want := "serverconfig-webhook-tls"
	if scoped {
		want = "serverconfig-webhook-byo-tls"
	}
	expect(&p, "Secret mounted at /etc/serverconfig-webhook/tls", secret, want)
	if tg, ok := get(pod, "terminationGracePeriodSeconds").(float64); !ok || tg <= 30 {
		p = append(p, "terminationGracePeriodSeconds must exceed --shutdown-delay + --drain-timeout (30s)")
	}
	pdb := one(objs, "PodDisruptionBudget", &p)
	expect(&p, "PDB minAvailable", get(pdb, "spec", "minAvailable"), 1)
	expect(&p, "PDB selector", get(pdb, "spec", "selector", "matchLabels"), get(d, "spec", "selector", "matchLabels"))
	svc := find(objs, "Service", releaseNS, fullname)
	expect(&p, "Service selector", get(svc, "spec", "selector"), get(d, "spec", "selector", "matchLabels"))
	sp := map[string]string{}
	for _, x := range list(get(svc, "spec", "ports")) {
		sp[str(get(x, "port"))] = str(get(x, "targetPort"))
	}
	expect(&p, "Service ports", sp, map[string]string{"443": "https", "9090": "metrics"})
	expect(&p, "ServiceAccount", get(pod, "serviceAccountName"), fullname)
	if find(objs, "ServiceAccount", releaseNS, fullname) == nil {
		p = append(p, "no ServiceAccount "+fullname)
	}
	check(mode+": Deployment, PDB, Service (restricted PSS, probes, TLS mount)", p)
}

func checkTLS(mode string, objs []Obj, scoped bool) {
	var p []string
	certs := byKind(objs, "Certificate")
	issuers := byKind(objs, "Issuer")
	if scoped {
		if len(certs)+len(issuers) != 0 {
			p = append(p, "cert-manager objects rendered with certManager.enabled=false")
		}
		check(mode+": no cert-manager objects", p)
		return
	}
	serving := find(objs, "Certificate", releaseNS, fullname+"-serving")
	if serving == nil {
		p = append(p, "no serving Certificate")
		check(mode+": cert-manager chain", p)
		return
	}
	s := fullname
	expect(&p, "serving dnsNames", get(serving, "spec", "dnsNames"), []string{
		s, s + "." + releaseNS, s + "." + releaseNS + ".svc", s + "." + releaseNS + ".svc.cluster.local"})
	expect(&p, "serving key", []any{get(serving, "spec", "privateKey", "algorithm"), get(serving, "spec", "privateKey", "size")}, []any{"ECDSA", 256})
	expect(&p, "serving duration", get(serving, "spec", "duration"), "2160h")
	expect(&p, "serving renewBefore", get(serving, "spec", "renewBefore"), "720h")
	expect(&p, "serving secretName", get(serving, "spec", "secretName"), fullname+"-tls")
	caIssuer := find(objs, "Issuer", releaseNS, str(get(serving, "spec", "issuerRef", "name")))
	caCert := Obj(nil)
	if caIssuer == nil || get(caIssuer, "spec", "ca", "secretName") == nil {
		p = append(p, "serving Certificate is not issued by a CA Issuer")
	} else {
		for _, c := range certs {
			if str(get(c, "spec", "secretName")) == str(get(caIssuer, "spec", "ca", "secretName")) {
				caCert = c
			}
		}
	}
	if caCert == nil {
		p = append(p, "no Certificate writes the CA Issuer's Secret")
	} else {
		expect(&p, "CA isCA", get(caCert, "spec", "isCA"), true)
		expect(&p, "CA key", []any{get(caCert, "spec", "privateKey", "algorithm"), get(caCert, "spec", "privateKey", "size")}, []any{"ECDSA", 256})
		self := find(objs, "Issuer", releaseNS, str(get(caCert, "spec", "issuerRef", "name")))
		if self == nil || get(self, "spec", "selfSigned") == nil {
			p = append(p, "CA Certificate is not issued by a self-signed Issuer")
		}
	}
	check(mode+": cert-manager chain (self-signed -> CA -> serving, ECDSA P-256)", p)
}

func checkNetworkPolicy(mode string, objs []Obj, scoped bool) {
	var p []string
	np := one(objs, "NetworkPolicy", &p)
	d := find(objs, "Deployment", releaseNS, fullname)
	expect(&p, "podSelector", get(np, "spec", "podSelector", "matchLabels"), get(d, "spec", "selector", "matchLabels"))
	expect(&p, "policyTypes", get(np, "spec", "policyTypes"), []string{"Ingress"})
	rules := map[string]any{}
	for _, r := range list(get(np, "spec", "ingress")) {
		for _, port := range list(get(r, "ports")) {
			rules[str(get(port, "port"))] = get(r, "from")
		}
	}
	var cidrs []string
	for _, f := range list(rules["8443"]) {
		cidrs = append(cidrs, str(get(f, "ipBlock", "cidr")))
	}
	if scoped {
		expect(&p, "8443 from", cidrs, []string{"10.0.0.0/24"})
		if _, ok := rules["9090"]; ok {
			p = append(p, "metricsFrom: [] must admit nobody to 9090, not everybody")
		}
	} else {
		expect(&p, "8443 from", cidrs, []string{"0.0.0.0/0", "::/0"})
		if len(list(rules["9090"])) == 0 {
			p = append(p, "no rule for the metrics port 9090")
		}
	}
	check(mode+": NetworkPolicy (8443 from CIDRs, 9090 from the scraper)", p)
}

// allowedRules is every (group, resource, verb) the webhook may hold anywhere.
var allowedRules = map[string][]string{
	"mlops.seldon.io/servers":       {"get", "list", "watch"},
	"mlops.seldon.io/serverconfigs": {"get", "list", "watch", "create", "update", "patch", "delete"},
	"apps/statefulsets":             {"get", "list", "watch", "patch", "delete"},
	"apps/deployments":              {"get", "list", "watch", "patch"},
	"events.k8s.io/events":          {"create", "patch"},
	"/events":                       {"create", "patch"},
	"coordination.k8s.io/leases":    {"get", "create", "update"},
}

func checkRBACRules(mode string, objs []Obj) {
	var p []string
	for _, r := range boundRules(objs) {
		if slices.Contains(r.verbs, "*") || slices.Contains(r.resources, "*") || slices.Contains(r.groups, "*") {
			p = append(p, fmt.Sprintf("wildcard in %s", r.from))
		}
		for _, g := range r.groups {
			for _, res := range r.resources {
				ok := allowedRules[g+"/"+res]
				for _, v := range r.verbs {
					if !slices.Contains(ok, v) {
						p = append(p, fmt.Sprintf("%s grants %s %s/%s", r.from, v, g, res))
					}
				}
				if g+"/"+res == "mlops.seldon.io/serverconfigs" && r.ns != ctlNS && slices.ContainsFunc(r.verbs, isWrite) {
					p = append(p, fmt.Sprintf("%s grants ServerConfig writes outside %s", r.from, ctlNS))
				}
				if g == "coordination.k8s.io" && r.ns != releaseNS {
					p = append(p, fmt.Sprintf("%s grants Leases outside %s", r.from, releaseNS))
				}
			}
		}
	}
	if len(boundRules(objs)) == 0 {
		p = append(p, "no RBAC bound to the ServiceAccount")
	}
	check(mode+": RBAC grants only the listed verbs (no wildcards, no Secrets)", p)
}

func isWrite(v string) bool { return v != "get" && v != "list" && v != "watch" }

// rule is one PolicyRule as bound to the ServiceAccount; ns "" is cluster-wide.
type rule struct {
	from                                    string
	ns                                      string
	groups, resources, verbs, resourceNames []string
}

func boundRules(objs []Obj) []rule {
	var out []rule
	for _, b := range append(byKind(objs, "RoleBinding"), byKind(objs, "ClusterRoleBinding")...) {
		bound := false
		for _, s := range list(get(b, "subjects")) {
			if str(get(s, "kind")) == "ServiceAccount" && str(get(s, "name")) == fullname && str(get(s, "namespace")) == releaseNS {
				bound = true
			}
		}
		if !bound {
			continue
		}
		refKind, refName := str(get(b, "roleRef", "kind")), str(get(b, "roleRef", "name"))
		roleNS := b.Namespace()
		if refKind == "ClusterRole" {
			roleNS = ""
		}
		role := find(objs, refKind, roleNS, refName)
		if role == nil {
			out = append(out, rule{from: b.Key() + " -> missing " + refKind + " " + refName, verbs: []string{"*"}})
			continue
		}
		for _, r := range list(role["rules"]) {
			out = append(out, rule{
				from: role.Key(), ns: b.Namespace(),
				groups: strs(get(r, "apiGroups")), resources: strs(get(r, "resources")),
				verbs: strs(get(r, "verbs")), resourceNames: strs(get(r, "resourceNames")),
			})
		}
	}
	return out
}

// can answers like the RBAC authorizer for the ServiceAccount (groups bound
// in a default cluster grant none of these resources). ns "" asks for all
// namespaces, or a cluster-scoped resource.
func can(rules []rule, verb, group, resource, ns, name string) bool {
	for _, r := range rules {
		if r.ns != "" && r.ns != ns {
			continue
		}
		if !matches(r.verbs, verb) || !matches(r.groups, group) || !matches(r.resources, resource) {
			continue
		}
		if len(r.resourceNames) > 0 && (name == "" || !slices.Contains(r.resourceNames, name)) {
			continue
		}
		return true
	}
	return false
}

func matches(l []string, v string) bool { return slices.Contains(l, v) || slices.Contains(l, "*") }

var matrixStart = regexp.MustCompile(`<!--\s*can-i:(\w+)\s*-->`)

// checkMatrix evaluates every row of the can-i tables of tests/deploy/README.md
// against the rendered RBAC of the matching install.
func checkMatrix(path string, installs map[string][]Obj) {
	b, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	rows := map[string]int{}
	var p = map[string][]string{}
	mode := ""
	for _, line := range strings.Split(string(b), "\n") {
		if m := matrixStart.FindStringSubmatch(line); m != nil {
			mode = m[1]
			if _, ok := installs[mode]; !ok {
				die("%s: unknown matrix %q", path, mode)
			}
			continue
		}
		if mode == "" {
			continue
		}
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "|") {
			if rows[mode] > 0 {
				mode = ""
			}
			continue
		}
		cells := strings.Split(strings.Trim(t, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		if len(cells) < 4 || cells[0] == "verb" || strings.HasPrefix(cells[0], "-") {
			continue
		}
		verb, res, ns, want := cells[0], cells[1], cells[2], cells[3]
		name := ""
		if i := strings.Index(res, "/"); i >= 0 {
			res, name = res[:i], res[i+1:]
		}
		group := ""
		if i := strings.Index(res, "."); i >= 0 {
			res, group = res[:i], res[i+1:]
		}
		switch ns {
		case "(all)", "(cluster)":
			ns = ""
		}
		got := "no"
		if can(boundRules(installs[mode]), verb, group, res, ns, name) {
			got = "yes"
		}
		rows[mode]++
		if got != want {
			p[mode] = append(p[mode], fmt.Sprintf("%s %s %s: rendered RBAC says %s, matrix says %s", cells[0], cells[1], cells[2], got, want))
		}
	}
	for _, mode := range []string{"default", "scoped"} {
		if rows[mode] == 0 {
			p[mode] = append(p[mode], "no rows found")
		}
		check(fmt.Sprintf("%s: tests/deploy/README.md can-i matrix (%d rows) matches the rendered RBAC", mode, rows[mode]), p[mode])
	}
}

// checkValuesDocumented: every leaf of values.yaml is named in the chart README.
func checkValuesDocumented(valuesPath, readmePath string) {
	vb, err := os.ReadFile(valuesPath)
	if err != nil {
		die("%v", err)
	}
	rb, err := os.ReadFile(readmePath)
	if err != nil {
		die("%v", err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(vb, &v); err != nil {
		die("%s: %v", valuesPath, err)
	}
	var p []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for _, k := range sortedKeys(m) {
			key := prefix + k
			if sub, ok := m[k].(map[string]any); ok && len(sub) > 0 && !strings.Contains(k, "Selector") && k != "resources" && k != "nodeSelector" && k != "labels" {
				walk(key+".", sub)
				continue
			}
			if !strings.Contains(string(rb), "| `"+key+"` |") {
				p = append(p, key)
			}
		}
	}
	walk("", v)
	if len(p) > 0 {
		p = []string{"not in the README values table: " + strings.Join(p, ", ")}
	}
	check("chart README documents every value", p)
}
