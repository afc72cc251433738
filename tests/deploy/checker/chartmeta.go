package main

// Chart.yaml against the binary: version and appVersion equal Cargo.toml's
// [package] version and what `serverconfig-webhook --version` prints, and
// the Artifact Hub annotations parse into what Artifact Hub documents
// (artifacthub.io/docs/topics/annotations/helm), with the image tag the
// chart renders by default.

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// chartFile is the part of Chart.yaml checked here.
type chartFile struct {
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	AppVersion  string            `json:"appVersion"`
	KubeVersion string            `json:"kubeVersion"`
	Annotations map[string]string `json:"annotations"`
}

var cargoVersionRe = regexp.MustCompile(`(?m)^version\s*=\s*"([^"]+)"`)

// cargoPackageVersion is the version of Cargo.toml's [package] table.
func cargoPackageVersion(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	text := string(b)
	start := strings.Index(text, "[package]")
	if start < 0 {
		return "", fmt.Errorf("%s: no [package] table", path)
	}
	section := text[start+len("[package]"):]
	if end := strings.Index(section, "\n["); end >= 0 {
		section = section[:end]
	}
	m := cargoVersionRe.FindStringSubmatch(section)
	if m == nil {
		return "", fmt.Errorf("%s: no version in [package]", path)
	}
	return m[1], nil
}

// annotationList decodes a YAML-list annotation into its entries.
func annotationList(ann map[string]string, key string, p *[]string) []map[string]any {
	raw, ok := ann[key]
	if !ok {
		*p = append(*p, key+" missing")
		return nil
	}
	var l []map[string]any
	if err := yaml.Unmarshal([]byte(raw), &l); err != nil {
		*p = append(*p, fmt.Sprintf("%s: not a YAML list of maps: %v", key, err))
		return nil
	}
	if len(l) == 0 {
		*p = append(*p, key+": empty")
	}
	return l
}

func validURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != ""
}

func chartMeta(chartPath, cargoPath, versionOutput string) {
	b, err := os.ReadFile(chartPath)
	if err != nil {
		die("%v", err)
	}
	var c chartFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		die("%s: %v", chartPath, err)
	}
	cargo, err := cargoPackageVersion(cargoPath)
	if err != nil {
		die("%v", err)
	}
	// versions
	var p []string
	fields := strings.Fields(versionOutput)
	binVersion := ""
	if len(fields) == 2 && fields[0] == "serverconfig-webhook" {
		binVersion = fields[1]
	} else {
		p = append(p, fmt.Sprintf("`serverconfig-webhook --version` printed %q, want `serverconfig-webhook <version>`", versionOutput))
	}
	for _, v := range []struct{ what, got string }{
		{"Chart.yaml version", c.Version}, {"Chart.yaml appVersion", c.AppVersion}, {"serverconfig-webhook --version", binVersion},
	} {
		if v.got != cargo {
			p = append(p, fmt.Sprintf("%s is %q, Cargo.toml's [package] version %q", v.what, v.got, cargo))
		}
	}
	check(fmt.Sprintf("Chart.yaml version == appVersion == Cargo.toml == serverconfig-webhook --version (%s)", cargo), p)

	// artifacthub.io/images: the image the chart renders by default
	p = nil
	images := annotationList(c.Annotations, "artifacthub.io/images", &p)
	want := "serverconfig-webhook:" + c.AppVersion
	var names []string
	for _, im := range images {
		names = append(names, str(im["image"]))
		if str(im["name"]) == "" {
			p = append(p, fmt.Sprintf("artifacthub.io/images entry %v has no name", im))
		}
	}
	if !slices.Contains(names, want) {
		p = append(p, fmt.Sprintf("artifacthub.io/images %v lacks %s (values.yaml image.repository : appVersion)", names, want))
	}
	check("Chart.yaml artifacthub.io/images names the rendered image "+want, p)

	// artifacthub.io/changes: kinds Artifact Hub knows
	p = nil
	kinds := []string{"added", "changed", "deprecated", "removed", "fixed", "security"}
	changes := annotationList(c.Annotations, "artifacthub.io/changes", &p)
	for _, ch := range changes {
		if !slices.Contains(kinds, str(ch["kind"])) || strings.TrimSpace(str(ch["description"])) == "" {
			p = append(p, fmt.Sprintf("artifacthub.io/changes entry %v: want kind in %v and a description", ch, kinds))
		}
	}
	check(fmt.Sprintf("Chart.yaml artifacthub.io/changes (%d entries, kinds Artifact Hub knows)", len(changes)), p)

	// artifacthub.io/links and recommendations: https URLs
	p = nil
	links := annotationList(c.Annotations, "artifacthub.io/links", &p)
	for _, l := range links {
		if str(l["name"]) == "" || !validURL(str(l["url"])) {
			p = append(p, fmt.Sprintf("artifacthub.io/links entry %v: want a name and an https url", l))
		}
	}
	for _, r := range annotationList(c.Annotations, "artifacthub.io/recommendations", &p) {
		if !validURL(str(r["url"])) {
			p = append(p, fmt.Sprintf("artifacthub.io/recommendations entry %v: want an https url", r))
		}
	}
	check(fmt.Sprintf("Chart.yaml artifacthub.io/links (%d) and recommendations", len(links)), p)

	// license (SPDX, the crate's), category, booleans
	p = nil
	if lic := c.Annotations["artifacthub.io/license"]; lic != cargoLicense(cargoPath) || lic == "" {
		p = append(p, fmt.Sprintf("artifacthub.io/license %q, Cargo.toml license %q", lic, cargoLicense(cargoPath)))
	}
	cats := []string{"ai-machine-learning", "database", "integration-delivery", "monitoring-logging", "networking", "security", "storage", "streaming-messaging", "skip-prediction"}
	if cat := c.Annotations["artifacthub.io/category"]; !slices.Contains(cats, cat) {
		p = append(p, fmt.Sprintf("artifacthub.io/category %q not one of %v", cat, cats))
	}
	for _, k := range []string{"artifacthub.io/prerelease", "artifacthub.io/containsSecurityUpdates"} {
		if v, ok := c.Annotations[k]; ok && v != "true" && v != "false" {
			p = append(p, fmt.Sprintf("%s %q: want \"true\" or \"false\"", k, v))
		}
	}
	for k := range c.Annotations {
		if !strings.HasPrefix(k, "artifacthub.io/") {
			p = append(p, "unexpected annotation "+k)
		}
	}
	check("Chart.yaml artifacthub.io/license == Cargo.toml license, category, flags", p)
}

var cargoLicenseRe = regexp.MustCompile(`(?m)^license\s*=\s*"([^"]+)"`)

// cargoLicense is the first `license = "..."` of Cargo.toml ([package]'s).
func cargoLicense(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if m := cargoLicenseRe.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}
