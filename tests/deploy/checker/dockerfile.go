package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"strings"

	"github.com/moby/patternmatcher"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string
	args string
	line int
}

func parseDockerfile(path string) ([]instruction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		t := strings.TrimSpace(line)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(t, "#") {
			continue // comment inside a continuation
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		fields := strings.SplitN(cur.String(), " ", 2)
		ins := instruction{cmd: strings.ToUpper(fields[0]), line: start}
		if len(fields) == 2 {
			ins.args = strings.TrimSpace(fields[1])
		}
		out = append(out, ins)
		cur.Reset()
	}
	return out, sc.Err()
}

// copySources returns the build-context sources of a COPY/ADD (none for --from).
func copySources(args string) (srcs []string, fromStage bool) {
	words := strings.Fields(args)
	var rest []string
	for i, w := range words {
		if strings.HasPrefix(w, "--") {
			if strings.HasPrefix(w, "--from=") {
				fromStage = true
			}
			continue
		}
		rest = words[i:]
		break
	}
	joined := strings.Join(rest, " ")
	if strings.HasPrefix(joined, "[") {
		var l []string
		if json.Unmarshal([]byte(joined), &l) == nil {
			rest = l
		}
	}
	if len(rest) < 2 {
		return nil, fromStage
	}
	return rest[:len(rest)-1], fromStage
}

func dockerfile(repo string) {
	df := filepath.Join(repo, "Dockerfile")
	ins, err := parseDockerfile(df)
	if err != nil {
		fail("Dockerfile parses", "%v", err)
		return
	}
	var ignore []string
	if b, err := os.ReadFile(filepath.Join(repo, ".dockerignore")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				ignore = append(ignore, l)
			}
		}
	} else {
		fail(".dockerignore exists", "%v", err)
	}
	pm, err := patternmatcher.New(ignore)
	if err != nil {
		fail(".dockerignore parses", "%v", err)
		return
	}
	ignored := func(rel string) bool {
		m, _ := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		return m
	}

	// 1. every COPY source from the build context exists and is not ignored.
	var p []string
	var copied []string
	stages := 0
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			stages++
		case "ADD":
			p = append(p, fmt.Sprintf("line %d: ADD (use COPY)", in.line))
		case "COPY":
			srcs, fromStage := copySources(in.args)
			if fromStage {
				continue
			}
			for _, s := range srcs {
				rel := filepath.Clean(strings.TrimPrefix(s, "/"))
				if strings.ContainsAny(rel, "*?[") {
					p = append(p, fmt.Sprintf("line %d: glob %q (list paths so this check can verify them)", in.line, s))
					continue
				}
				if _, err := os.Stat(filepath.Join(repo, rel)); err != nil {
					p = append(p, fmt.Sprintf("line %d: COPY source %q does not exist", in.line, s))
				} else if ignored(rel) {
					p = append(p, fmt.Sprintf("line %d: COPY source %q is excluded by .dockerignore", in.line, s))
				}
				copied = append(copied, rel)
			}
		}
	}
	if len(copied) == 0 {
		p = append(p, "no COPY from the build context")
	}
	check(fmt.Sprintf("Dockerfile: %d COPY sources exist in the repo and pass .dockerignore", len(copied)), p)

	// 2. the build stage builds the static musl release binary, locked.
	p = nil
	var run string
	for _, in := range ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "cargo build") {
			run = in.args
		}
	}
	for _, want := range []string{"--release", "--locked", "--target x86_64-unknown-linux-musl"} {
		if !strings.Contains(run, want) && !strings.Contains(run, strings.Replace(want, " ", "=", 1)) {
			p = append(p, "cargo build lacks "+want)
		}
	}
	if stages < 2 {
		p = append(p, "not multi-stage")
	}
	check("Dockerfile: build stage runs cargo build --release --locked --target x86_64-unknown-linux-musl", p)

	// 3. final stage: distroless/scratch, USER 65532, ENTRYPOINT binary serve, no shell.
	p = nil
	lastFrom := -1
	for i, in := range ins {
		if in.cmd == "FROM" {
			lastFrom = i
		}
	}
	final := ins[lastFrom:]
	base := strings.Fields(final[0].args)
	if len(base) == 0 || !(strings.HasPrefix(base[0], "gcr.io/distroless/static") || base[0] == "scratch") {
		p = append(p, "final stage is not distroless/static or scratch")
	}
	var user, entry string
	for _, in := range final[1:] {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "RUN":
			p = append(p, fmt.Sprintf("line %d: RUN in the final stage (no shell there)", in.line))
		}
	}
	if user != "65532" && user != "65532:65532" {
		p = append(p, "USER is "+user+", want 65532")
	}
	var ep []string
	if json.Unmarshal([]byte(entry), &ep) != nil || len(ep) != 2 || filepath.Base(ep[0]) != "serverconfig-webhook" || ep[1] != "serve" {
		p = append(p, "ENTRYPOINT is "+entry+`, want ["/.../serverconfig-webhook", "serve"] (exec form: there is no shell)`)
	}
	check("Dockerfile: final stage distroless static, USER 65532, exec-form ENTRYPOINT serve", p)

	// 4. cargo can load the workspace from the copied files: Cargo.lock is
	// current (--locked) and every target of every member is copied.
	p = nil
	if _, err := os.Stat(filepath.Join(repo, "Cargo.lock")); err != nil {
		p = append(p, "no Cargo.lock")
	}
	cmd := exec.Command("cargo", "metadata", "--locked", "--format-version", "1")
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		p = append(p, fmt.Sprintf("cargo metadata --locked: %v (Cargo.lock out of date?)", err))
	} else {
		var meta struct {
			Members  []string `json:"workspace_members"`
			Packages []struct {
				ID           string `json:"id"`
				ManifestPath string `json:"manifest_path"`
				Targets      []struct {
					Kind    []string `json:"kind"`
					SrcPath string   `json:"src_path"`
				} `json:"targets"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(out, &meta); err != nil {
			p = append(p, "cargo metadata: "+err.Error())
		}
		root, _ := filepath.Abs(repo)
		root, _ = filepath.EvalSymlinks(root)
		members := map[string]bool{}
		for _, m := range meta.Members {
			members[m] = true
		}
		inContext := func(abs string) bool {
			rel, err := filepath.Rel(root, abs)
			if err != nil {
				return false
			}
			for _, c := range copied {
				if rel == c || strings.HasPrefix(rel, c+string(filepath.Separator)) || c == "." {
					return !ignored(rel)
				}
			}
			return false
		}
		for _, pkg := range meta.Packages {
			if !members[pkg.ID] {
				continue
			}
			if !inContext(pkg.ManifestPath) {
				p = append(p, "manifest not copied: "+pkg.ManifestPath)
			}
			for _, t := range pkg.Targets {
				// tests/ and examples/ are auto-discovered: absent is fine.
				if hasStr(t.Kind, "test") || hasStr(t.Kind, "example") {
					continue
				}
				if !inContext(t.SrcPath) {
					p = append(p, fmt.Sprintf("%v target %s is not in the build context (cargo would refuse the manifest)", t.Kind, t.SrcPath))
				}
			}
		}
	}
	check("Dockerfile: Cargo.lock current and every workspace manifest and target copied", p)
}

func hasStr(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}
