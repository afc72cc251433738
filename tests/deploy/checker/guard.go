package main

import (
	"fmt"
	"slices"

	"github.com/google/cel-go/cel"
)

// celEval compiles and runs one CEL expression over the admission variables,
// as the API server binds them (object/oldObject null where absent).
func celEval(expr string, vars map[string]any) (any, error) {
	env, err := cel.NewEnv(
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
		cel.Variable("variables", cel.DynType),
	)
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	prg, err := env.Program(ast)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"object", "oldObject", "request", "variables"} {
		if _, ok := vars[k]; !ok {
			vars[k] = nil
		}
	}
	out, _, err := prg.Eval(vars)
	if err != nil {
		return nil, err
	}
	return out.Value(), nil
}

func serverConfig(labels map[string]any) map[string]any {
	return serverConfigWith(labels, "")
}

// serverConfigWith is a ServerConfig whose spec names image (none: empty).
func serverConfigWith(labels map[string]any, image string) map[string]any {
	meta := map[string]any{"name": "mlserver", "namespace": ctlNS}
	if labels != nil {
		meta["labels"] = labels
	}
	containers := []any{}
	if image != "" {
		containers = append(containers, map[string]any{"name": "agent", "image": image})
	}
	spec := map[string]any{"podSpec": map[string]any{"containers": containers}, "volumeClaimTemplates": []any{}}
	return map[string]any{"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "ServerConfig", "metadata": meta, "spec": spec}
}

// checkGuard: the ValidatingAdmissionPolicy is bound, matches only the
// webhook's ServiceAccount and ServerConfig writes, and its CEL decides the
// placeholder cases right.
func checkGuard(mode string, objs []Obj) {
	var p []string
	vap := one(objs, "ValidatingAdmissionPolicy", &p)
	vapb := one(objs, "ValidatingAdmissionPolicyBinding", &p)
	if len(p) > 0 {
		check(mode+": placeholder guard (ValidatingAdmissionPolicy)", p)
		return
	}
	expect(&p, "binding policyName", get(vapb, "spec", "policyName"), vap.Name())
	expect(&p, "binding validationActions", get(vapb, "spec", "validationActions"), []string{"Deny"})
	expect(&p, "policy failurePolicy", get(vap, "spec", "failurePolicy"), "Fail")
	expect(&p, "policy resourceRules", get(vap, "spec", "matchConstraints", "resourceRules"), []any{map[string]any{
		"apiGroups": []string{"mlops.seldon.io"}, "apiVersions": []string{"*"}, "resources": []string{"serverconfigs"},
		"operations": []string{"CREATE", "UPDATE", "DELETE"}}})
	if !slices.Contains(strs(get(vap, "apiVersion")), "") && vap.APIVersion() != "admissionregistration.k8s.io/v1" {
		p = append(p, "apiVersion "+vap.APIVersion())
	}
	req := func(op, user string) map[string]any {
		return map[string]any{"operation": op, "namespace": ctlNS, "name": "mlserver",
			"userInfo": map[string]any{"username": user}}
	}
	// matchConditions: the webhook's ServiceAccount, and others only on an
	// UPDATE of a labelled ServerConfig (the table below); CREATE of others
	// is never matched.
	for _, mc := range list(get(vap, "spec", "matchConditions")) {
		for user, want := range map[string]bool{saUser: true,
			"system:serviceaccount:seldon-system:seldon-v2-controller-manager": false, "kubernetes-admin": false} {
			got, err := celEval(str(get(mc, "expression")), map[string]any{"request": req("CREATE", user)})
			if err != nil || got != want {
				p = append(p, fmt.Sprintf("matchCondition %s for %s = %v (%v), want %v", str(get(mc, "name")), user, got, err, want))
			}
		}
	}
	if len(list(get(vap, "spec", "matchConditions"))) == 0 {
		p = append(p, "no matchConditions: the policy would judge every user")
	}
	owned := map[string]any{"app.kubernetes.io/managed-by": "serverconfig-webhook"}
	other := map[string]any{"app.kubernetes.io/managed-by": "Helm"}
	const admin = "kubernetes-admin"
	cases := []struct {
		user     string
		op       string
		old, obj map[string]any
		allow    bool
	}{
		{saUser, "CREATE", nil, serverConfig(owned), true},
		{saUser, "CREATE", nil, serverConfig(nil), false},
		{saUser, "CREATE", nil, serverConfig(other), false},
		{saUser, "UPDATE", serverConfig(owned), serverConfig(owned), true},
		{saUser, "UPDATE", serverConfig(nil), serverConfig(owned), false}, // adopting by labelling
		{saUser, "UPDATE", serverConfig(other), serverConfig(owned), false},
		{saUser, "UPDATE", serverConfig(owned), serverConfig(nil), false},
		{saUser, "UPDATE", serverConfig(nil), serverConfig(nil), false},
		{saUser, "DELETE", serverConfig(owned), nil, true},
		{saUser, "DELETE", serverConfig(nil), nil, false},
		{saUser, "DELETE", serverConfig(other), nil, false},
		// others: a placeholder may not keep the label while its spec changes
		{admin, "UPDATE", serverConfig(owned), serverConfigWith(owned, "platform/agent:1"), false},
		{admin, "UPDATE", serverConfig(owned), serverConfigWith(nil, "platform/agent:1"), true},
		{admin, "UPDATE", serverConfig(owned), serverConfigWith(other, "platform/agent:1"), true},
		{admin, "UPDATE", serverConfig(owned), serverConfig(owned), true}, // metadata only
		{admin, "UPDATE", serverConfig(nil), serverConfigWith(owned, "platform/agent:1"), true},
		{admin, "CREATE", nil, serverConfig(owned), true},
		{admin, "DELETE", serverConfig(owned), nil, true},
	}
	for _, c := range cases {
		vars := map[string]any{"object": nilIfEmpty(c.obj), "oldObject": nilIfEmpty(c.old), "request": req(c.op, c.user)}
		matched := true
		for _, mc := range list(get(vap, "spec", "matchConditions")) {
			got, err := celEval(str(get(mc, "expression")), copyVars(vars, nil))
			if err != nil {
				p = append(p, fmt.Sprintf("matchCondition %s: %v", str(get(mc, "name")), err))
			}
			matched = matched && got == true
		}
		if !matched {
			if !c.allow {
				p = append(p, fmt.Sprintf("%s by %s not matched, want denied", c.op, c.user))
			}
			continue
		}
		computed := map[string]any{}
		for _, v := range list(get(vap, "spec", "variables")) {
			val, err := celEval(str(get(v, "expression")), copyVars(vars, computed))
			if err != nil {
				p = append(p, fmt.Sprintf("variable %s: %v", str(get(v, "name")), err))
				continue
			}
			computed[str(get(v, "name"))] = val
		}
		allowed := true
		for _, v := range list(get(vap, "spec", "validations")) {
			got, err := celEval(str(get(v, "expression")), copyVars(vars, computed))
			if err != nil {
				p = append(p, fmt.Sprintf("%s: validation error %v", c.op, err))
				continue
			}
			if got != true {
				allowed = false
				if me := str(get(v, "messageExpression")); me != "" {
					if msg, err := celEval(me, copyVars(vars, computed)); err != nil {
						p = append(p, fmt.Sprintf("messageExpression: %v", err))
					} else if _, ok := msg.(string); !ok {
						p = append(p, "messageExpression is not a string")
					}
				}
			}
		}
		if allowed != c.allow {
			p = append(p, fmt.Sprintf("%s by %s old=%v new=%v: allowed=%v, want %v", c.op, c.user,
				get(c.old, "metadata", "labels"), get(c.obj, "metadata", "labels"), allowed, c.allow))
		}
	}
	check(fmt.Sprintf("%s: placeholder guard (ValidatingAdmissionPolicy, %d CEL cases)", mode, len(cases)), p)
}

func nilIfEmpty(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func copyVars(vars, computed map[string]any) map[string]any {
	out := map[string]any{"variables": computed}
	for k, v := range vars {
		out[k] = v
	}
	return out
}

// checkMatchConditionCEL: only objects a Seldon Server controls reach the webhook.
func checkMatchConditionCEL(objs []Obj) {
	var p []string
	mwc := one(objs, "MutatingWebhookConfiguration", &p)
	mcs := list(get(mwc, "webhooks", 0, "matchConditions"))
	owner := func(apiVersion, kind string, controller any) map[string]any {
		r := map[string]any{"apiVersion": apiVersion, "kind": kind, "name": "x", "uid": "u"}
		if controller != nil {
			r["controller"] = controller
		}
		return map[string]any{"metadata": map[string]any{"name": "x", "ownerReferences": []any{r}}}
	}
	cases := []struct {
		name string
		obj  map[string]any
		want bool
	}{
		{"controlled by a Server", owner("mlops.seldon.io/v1alpha1", "Server", true), true},
		{"Server owner, not controller", owner("mlops.seldon.io/v1alpha1", "Server", false), false},
		{"Server owner, controller unset", owner("mlops.seldon.io/v1alpha1", "Server", nil), false},
		{"another group's Server", owner("example.com/v1", "Server", true), false},
		{"a ReplicaSet's", owner("apps/v1", "ReplicaSet", true), false},
		{"no owner", map[string]any{"metadata": map[string]any{"name": "x"}}, false},
	}
	for _, c := range cases {
		all := true
		for _, mc := range mcs {
			got, err := celEval(str(get(mc, "expression")), map[string]any{"object": c.obj})
			if err != nil {
				p = append(p, fmt.Sprintf("%s: %v", c.name, err))
			}
			if got != true {
				all = false
			}
		}
		if all != c.want {
			p = append(p, fmt.Sprintf("%s: reaches the webhook=%v, want %v", c.name, all, c.want))
		}
	}
	check(fmt.Sprintf("webhook matchConditions CEL (%d cases)", len(cases)), p)
}
