// Command checker is the Go half of tests/deploy/check.sh:
//
//	checker split -in RENDERED -out DIR -cmd CMD   write the kustomize base (one file per kind)
//	checker objects -default F -scoped F -kustomize F -matrix F
//	checker dockerfile -repo DIR                    Dockerfile + .dockerignore vs the repo
//	checker values-table -schema F -values F -readme F [-write]
//	                                                the chart README's values table vs values.schema.json
//	checker chart -chart F -cargo F -version-output S
//	                                                Chart.yaml versions and Artifact Hub annotations
//	checker monitoring -render F -webhook BIN -promtool BIN -tests F -runbook F -dashboard F -work DIR
//	                                                the alert rules and dashboard against promtool and a scrape of serve
//
// Every check prints one line, `PASS <name>` or `FAIL <name>: <why>`; the exit
// status is 1 when any check failed, 2 on usage or I/O errors.
package main

import (
	"flag"
	"fmt"
	"os"
)

var failed int

func pass(name string) { fmt.Printf("PASS %s\n", name) }

func fail(name, format string, a ...any) {
	failed++
	fmt.Printf("FAIL %s: %s\n", name, fmt.Sprintf(format, a...))
}

// check records one named check from a list of problems (none: PASS).
func check(name string, problems []string) {
	if len(problems) == 0 {
		pass(name)
		return
	}
	msg := problems[0]
	for _, p := range problems[1:] {
		msg += "; " + p
	}
	fail(name, "%s", msg)
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "checker: "+format+"\n", a...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: checker split|objects|dockerfile|values-table|chart|monitoring [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	switch os.Args[1] {
	case "split":
		in := fs.String("in", "", "helm template output")
		out := fs.String("out", "", "output directory (replaced)")
		cmd := fs.String("cmd", "", "the command that rendered -in (for the header)")
		_ = fs.Parse(os.Args[2:])
		if err := split(*in, *out, *cmd); err != nil {
			die("split: %v", err)
		}
	case "objects":
		def := fs.String("default", "", "helm template, default values")
		scoped := fs.String("scoped", "", "helm template, tests/deploy/values-scoped.yaml")
		kust := fs.String("kustomize", "", "kustomize build deploy/kustomize")
		matrix := fs.String("matrix", "", "tests/deploy/README.md (can-i matrix)")
		mon := fs.String("monitoring", "", "helm template with the monitoring objects on")
		_ = fs.Parse(os.Args[2:])
		objects(*def, *scoped, *kust, *matrix)
		if *mon != "" {
			checkMonitoringObjects(mustLoad(*def), mustLoad(*mon))
		}
	case "monitoring":
		var a monitoringArgs
		fs.StringVar(&a.render, "render", "", "helm template with the monitoring objects on (default release)")
		fs.StringVar(&a.webhook, "webhook", "", "the serverconfig-webhook binary")
		fs.StringVar(&a.promtool, "promtool", "", "the promtool binary")
		fs.StringVar(&a.tests, "tests", "", "promtool rule tests")
		fs.StringVar(&a.runbook, "runbook", "", "docs/runbook.md")
		fs.StringVar(&a.dashboard, "dashboard", "", "the chart's dashboard JSON")
		fs.StringVar(&a.work, "work", "", "scratch folder")
		_ = fs.Parse(os.Args[2:])
		monitoring(a)
	case "dockerfile":
		repo := fs.String("repo", ".", "repository root")
		_ = fs.Parse(os.Args[2:])
		dockerfile(*repo)
	case "values-table":
		schema := fs.String("schema", "", "chart values.schema.json")
		values := fs.String("values", "", "chart values.yaml")
		readme := fs.String("readme", "", "chart README.md")
		write := fs.Bool("write", false, "rewrite the README's table instead of checking it")
		_ = fs.Parse(os.Args[2:])
		valuesTable(*schema, *values, *readme, *write)
	case "chart":
		chart := fs.String("chart", "", "Chart.yaml")
		cargo := fs.String("cargo", "", "Cargo.toml")
		version := fs.String("version-output", "", "what `serverconfig-webhook --version` printed")
		_ = fs.Parse(os.Args[2:])
		chartMeta(*chart, *cargo, *version)
	default:
		die("unknown command %q", os.Args[1])
	}
	if failed > 0 {
		os.Exit(1)
	}
}
