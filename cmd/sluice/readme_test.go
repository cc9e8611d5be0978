package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/ops"
	"github.com/sluicehq/sluice/schema"
)

// The README is tested like code: every command in it exists with the flags
// it shows, every YAML block loads with the real config loader, the blocks
// marked runnable run, and the deployment files' commands parse too.

const repoRoot = "../.."

// runMarker, on the line before a fenced block, makes TestREADME run the
// block's sluice commands in a scratch directory (with short durations,
// see readmeRunArgs), in README order: later blocks see what earlier ones
// left behind, as a reader following the README would.
const runMarker = "<!-- readme-test: run -->"

// mdBlock is one fenced code block of a Markdown file.
type mdBlock struct {
	lang string
	body string
	line int // of the opening fence, 1-based
	run  bool
}

func markdownBlocks(doc string) []mdBlock {
	var out []mdBlock
	var cur *mdBlock
	var body strings.Builder
	prev := ""
	for i, l := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(l)
		if cur == nil {
			if lang, ok := strings.CutPrefix(trimmed, "```"); ok {
				cur = &mdBlock{lang: strings.TrimSpace(lang), line: i + 1, run: prev == runMarker}
				body.Reset()
				continue
			}
			if trimmed != "" {
				prev = trimmed
			}
			continue
		}
		if trimmed == "```" {
			cur.body = body.String()
			out = append(out, *cur)
			cur, prev = nil, ""
			continue
		}
		body.WriteString(l)
		body.WriteByte('\n')
	}
	return out
}

// shellLine is one command of a shell block, continuation lines joined.
type shellLine struct {
	words   []string // the command's words, quotes removed
	comment string   // the text after #, if any
	line    int      // in the Markdown file
}

func shellLines(b mdBlock) ([]shellLine, error) {
	var out []shellLine
	var joined strings.Builder
	start := 0
	for i, l := range strings.Split(strings.TrimRight(b.body, "\n"), "\n") {
		if joined.Len() == 0 {
			start = b.line + 1 + i
		}
		if cont, ok := strings.CutSuffix(l, `\`); ok {
			joined.WriteString(cont + " ")
			continue
		}
		joined.WriteString(l)
		words, comment, err := splitShell(joined.String())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", start, err)
		}
		joined.Reset()
		if len(words) > 0 || comment != "" {
			out = append(out, shellLine{words: words, comment: comment, line: start})
		}
	}
	return out, nil
}

// splitShell splits a command line into words the way a POSIX shell does
// for the quoting the README uses (single and double quotes, backslash),
// and returns the comment after an unquoted # that starts a word.
func splitShell(s string) (words []string, comment string, err error) {
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, strings.TrimSpace(s[i+1:]), nil
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, "", errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, "", errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, "", nil
}

var envAssign = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// sluiceArgs returns the arguments of a sluice command line (`sluice ...`
// or `go run ./cmd/sluice ...`, after environment assignments), or false.
func sluiceArgs(words []string) ([]string, bool) {
	for len(words) > 0 && envAssign.MatchString(words[0]) {
		words = words[1:]
	}
	switch {
	case len(words) >= 1 && (words[0] == "sluice" || words[0] == "bin/sluice" || words[0] == "./bin/sluice"):
		return words[1:], true
	case len(words) >= 3 && words[0] == "go" && words[1] == "run" && strings.TrimSuffix(words[2], "/") == "./cmd/sluice":
		return words[3:], true
	}
	return nil, false
}

// checkCommandLine checks args against the real command tree: the
// subcommand exists, every flag exists and its value parses, and (with
// arity) the positional arguments fit the subcommand.
func checkCommandLine(args []string, arity bool) error {
	root := newRootCmd(io.Discard, io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if cmd == root {
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			return fmt.Errorf("unknown subcommand %q", args[0])
		}
		return errors.New("no subcommand")
	}
	if cmd.HasSubCommands() && cmd.RunE == nil && cmd.Run == nil {
		return fmt.Errorf("%q needs a subcommand", cmd.CommandPath())
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if arity {
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
		}
	}
	return nil
}

// commentCommand picks a sluice command mentioned in a comment or in prose,
// e.g. "sluice loadtest --config /etc/sluice/sluice.yaml (LOADTEST_RATE)":
// its words up to the first that is not part of a command line.
func commentCommand(text string) ([]string, bool) {
	words, _, err := splitShell(text)
	if err != nil {
		return nil, false
	}
	for i, w := range words {
		if w != "sluice" {
			continue
		}
		var args []string
		for _, a := range words[i+1:] {
			if strings.ContainsAny(a, "(),;`") && !strings.HasPrefix(a, "-") && !strings.Contains(a, "/") {
				break
			}
			args = append(args, strings.TrimRight(a, ".,;"))
		}
		if len(args) > 0 && subcommandWord.MatchString(args[0]) {
			return args, true
		}
	}
	return nil, false
}

var (
	inlineCode     = regexp.MustCompile("`([^`\n]+)`")
	makeTarget     = regexp.MustCompile(`(?m)^([A-Za-z0-9_-]+):`)
	subcommandWord = regexp.MustCompile(`^[a-z]+$`)
)

// readmeProblems checks a README statically: every sluice command line of
// its shell blocks (with its positional arguments), every sluice command
// named in their comments and in inline code (subcommand and flags), every
// make target, and every YAML block with the config loader. It returns one
// line per problem.
func readmeProblems(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range makeTarget.FindAllStringSubmatch(string(mk), -1) {
		targets[m[1]] = true
	}
	var problems []string
	report := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: %s", filepath.Base(path), line, fmt.Sprintf(format, args...)))
	}
	commands := 0
	for _, b := range markdownBlocks(doc) {
		switch b.lang {
		case "sh", "bash", "shell", "console":
			lines, err := shellLines(b)
			if err != nil {
				report(b.line, "%v", err)
				continue
			}
			for _, l := range lines {
				if args, ok := sluiceArgs(l.words); ok {
					commands++
					if err := checkCommandLine(args, true); err != nil {
						report(l.line, "%s: %v", strings.Join(l.words, " "), err)
					}
				}
				if len(l.words) >= 2 && l.words[0] == "make" && !targets[l.words[1]] {
					report(l.line, "make %s: no such target in the Makefile", l.words[1])
				}
				if args, ok := commentCommand(l.comment); ok {
					commands++
					if err := checkCommandLine(args, false); err != nil {
						report(l.line, "comment %q: %v", l.comment, err)
					}
				}
			}
		case "yaml", "yml":
			if err := checkYAMLBlock(t, b.body); err != nil {
				report(b.line, "YAML block: %v", err)
			}
		}
	}
	// Inline code in prose: sluice commands, make targets, and lone flags,
	// which belong to the subcommand the section's heading names (e.g.
	// "What `dev` runs") or else to some subcommand.
	inBlock, section := false, ""
	for i, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			continue
		}
		if strings.HasPrefix(line, "#") {
			section = ""
			for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
				if err := checkCommandLine([]string{m[1]}, false); err == nil && section == "" {
					section = m[1]
				}
			}
		}
		for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
			words, _, err := splitShell(m[1])
			if err != nil || len(words) == 0 {
				continue
			}
			if strings.HasPrefix(words[0], "--") {
				commands++
				if err := checkLoneFlag(section, words); err != nil {
					report(i+1, "`%s`: %v", m[1], err)
				}
				continue
			}
			if args, ok := sluiceArgs(words); ok && len(args) > 0 {
				commands++
				if err := checkCommandLine(args, false); err != nil {
					report(i+1, "`%s`: %v", m[1], err)
				}
			}
			if len(words) == 2 && words[0] == "make" && !targets[words[1]] {
				report(i+1, "`%s`: no such target in the Makefile", m[1])
			}
		}
	}
	if commands == 0 {
		report(0, "no sluice command found")
	}
	return problems
}

// checkLoneFlag checks a flag named on its own in prose (with or without a
// value): on the section's subcommand if its heading names one, else on any
// subcommand.
func checkLoneFlag(section string, words []string) error {
	check := func(sub string) error {
		if len(words) > 1 || strings.Contains(words[0], "=") {
			return checkCommandLine(append([]string{sub}, words...), false)
		}
		root := newRootCmd(io.Discard, io.Discard)
		cmd, _, err := root.Find([]string{sub})
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(words[0], "--")
		if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
			return fmt.Errorf("%s: unknown flag: %s", cmd.CommandPath(), words[0])
		}
		return nil
	}
	if section != "" {
		return check(section)
	}
	var first error
	for _, c := range newRootCmd(io.Discard, io.Discard).Commands() {
		err := check(c.Name())
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return fmt.Errorf("no subcommand takes it (%v)", first)
}

// checkYAMLBlock loads a YAML block of the README as what it is: a table
// file (top-level tables:) with the table parser, a rules file (top-level
// rules:) with the rules compiler against the sample tables, anything else as
// sluice.yaml with the config loader, with every ${VAR} it names set. A
// sample must also work against a non-AWS S3 endpoint as written: when the
// raw store carries keys, a summary store on the same endpoint must too, or
// it falls back to the AWS credential chain.
func checkYAMLBlock(t *testing.T, body string) error {
	dir := t.TempDir()
	var top map[string]any
	if err := yaml.Unmarshal([]byte(body), &top); err != nil {
		return err
	}
	if _, ok := top["tables"]; ok {
		p := filepath.Join(dir, "tables.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
		_, err := schema.Load(p)
		return err
	}
	if _, ok := top["rules"]; ok {
		for _, m := range config.EnvRef.FindAllStringSubmatch(body, -1) {
			if _, set := os.LookupEnv(m[1]); !set {
				t.Setenv(m[1], "whsec_"+base64.StdEncoding.EncodeToString([]byte("readme-secret-"+m[1])))
			}
		}
		_, err := ops.ParseRules([]byte(body), "rules.yaml", schema.SampleTables(), []string{"127.0.0.1:9092"})
		return err
	}
	p := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		return err
	}
	for _, m := range config.EnvRef.FindAllStringSubmatch(body, -1) {
		if _, set := os.LookupEnv(m[1]); !set {
			t.Setenv(m[1], "readme-"+strings.ToLower(m[1]))
		}
	}
	cfg, err := config.Load(p)
	if err != nil {
		return err
	}
	if raw, sum := cfg.Store.S3, cfg.SummaryStore; raw != nil && raw.AccessKey != "" && sum != nil && sum.S3 != nil &&
		sum.S3.Endpoint == raw.Endpoint && sum.S3.AccessKey == "" {
		return fmt.Errorf("summary_store.s3 has no access_key while store.s3 on the same endpoint %q has one: it would fall back to the AWS credential chain", raw.Endpoint)
	}
	return nil
}

// TestREADME checks README.md against the binary (see readmeProblems) and
// runs its blocks marked runnable in a scratch directory.
func TestREADME(t *testing.T) {
	readme := filepath.Join(repoRoot, "README.md")
	t.Run("commands and configs", func(t *testing.T) {
		for _, p := range readmeProblems(t, readme) {
			t.Error(p)
		}
	})
	t.Run("runnable blocks", func(t *testing.T) {
		if testing.Short() {
			t.Skip("runs dev and a load test")
		}
		runReadmeBlocks(t, readme)
	})
}

// The checker is only worth something if it fails: each planted mistake in
// a scratch copy of the README is reported.
func TestREADMECheckCatchesMistakes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"renamed flag", "loadtest --embedded --duration 60s", "loadtest --embedded --runtime 60s"},
		{"bad flag value", "loadtest --embedded --duration 60s", "loadtest --embedded --duration sixty"},
		{"unknown subcommand", "go run ./cmd/sluice inspect ./sluice-data/lake/events\n", "go run ./cmd/sluice show ./sluice-data/lake/events\n"},
		{"missing argument", "go run ./cmd/sluice inspect ./sluice-data/lake/events\n", "go run ./cmd/sluice inspect\n"},
		{"flag in a comment", "# sluice loadtest --config /etc/sluice/sluice.yaml", "# sluice loadtest --brokers redpanda:9092 --config-file x"},
		{"flag in inline code", "`--flush-interval` plus 15 s", "`sluice dev --flush-every` plus 15 s"},
		{"make target", "make test-long", "make test-longer"},
		{"lone flag of the dev section", "(`--kafka-addr`)", "(`--broker-addr`)"},
		{"unknown config key", "  flush_interval: 30s ", "  flush_every: 30s "},
		{"missing tables file", "# tables_file: tables.yaml", "tables_file: tables.yaml"},
		{"summary store without keys", `access_key: "${S3_ACCESS_KEY}", secret_key: "${S3_SECRET_KEY}"}`, `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(raw, []byte(tc.old)) {
				t.Fatalf("README no longer contains %q: update this test", tc.old)
			}
			p := filepath.Join(t.TempDir(), "README.md")
			if err := os.WriteFile(p, bytes.Replace(raw, []byte(tc.old), []byte(tc.new), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			problems := readmeProblems(t, p)
			if len(problems) == 0 {
				t.Fatalf("replacing %q by %q: no problem reported", tc.old, tc.new)
			}
			t.Logf("reported: %s", strings.Join(problems, "; "))
		})
	}
}

// runReadmeBlocks runs the sluice commands of the runnable blocks, in
// order, in one scratch directory, then checks that whatever they left in
// it is git-ignored (a reader runs them in the checkout).
func runReadmeBlocks(t *testing.T, readme string) {
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	t.Chdir(scratch)
	ran := 0
	for _, b := range markdownBlocks(string(raw)) {
		if !b.run {
			continue
		}
		lines, err := shellLines(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			args, ok := sluiceArgs(l.words)
			if !ok {
				continue
			}
			ran++
			name := fmt.Sprintf("line %d: %s", l.line, strings.Join(args, " "))
			if !runReadmeCommand(t, name, args) {
				return
			}
		}
	}
	if ran == 0 {
		t.Fatalf("no runnable sluice command in %s (blocks marked %s)", readme, runMarker)
	}
	entries, err := os.ReadDir(scratch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Logf("git not found: not checking that the outputs are git-ignored")
		return
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			name += "/"
		}
		cmd := exec.Command("git", "-C", repo, "check-ignore", "-q", "--no-index", "--", name)
		if err := cmd.Run(); err != nil {
			t.Errorf("the README's commands leave %s in the checkout, and .gitignore does not ignore it (%v)", name, err)
		}
	}
}

// readmeRunArgs shortens what the README runs for a minute or until Ctrl-C,
// and keeps it off ports another process may hold.
var readmeRunArgs = map[string][]string{
	"dev":      {"--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rate", "500", "--flush-interval", "1s"},
	"loadtest": {"--duration", "3s", "--rate", "2000", "--flush-interval", "1s", "--aggregate-interval", "1s", "--quiet"},
}

// runReadmeCommand runs one command in process and reports whether it
// ended as a reader would expect. dev runs until it has committed objects
// (with SLUICE_LONG also until its first 1-minute summary), then gets
// Ctrl-C; reading summaries needs that long run, so without SLUICE_LONG a
// command on dev's summaries is only checked, not run.
func runReadmeCommand(t *testing.T, name string, args []string) bool {
	long := os.Getenv("SLUICE_LONG") != ""
	if !long && strings.Contains(strings.Join(args, " "), "sluice-data/summaries") {
		t.Logf("%s: not run (dev's first summary takes about a minute; SLUICE_LONG=1 runs it)", name)
		return true
	}
	full := append(append([]string{}, args...), readmeRunArgs[args[0]]...)
	full = append(full, "--log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if args[0] != "dev" {
		if code := run(ctx, full, &stdout, &stderr); code != exitOK {
			t.Errorf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, tailLines(stdout.String(), 30), stderr.String())
			return false
		}
		return true
	}
	devCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	done := make(chan int, 1)
	go func() { done <- run(devCtx, full, &stdout, &stderr) }()
	ready := func() bool {
		b, err := objstore.NewLocal(filepath.Join("sluice-data", "lake"))
		if err != nil {
			return false
		}
		recs, err := lake.NewCommitLog(b).Records(ctx, "events")
		if err != nil || len(recs) == 0 {
			return false
		}
		if !long {
			return true
		}
		found, _ := filepath.Glob(filepath.Join("sluice-data", "summaries", "events", "1m", "dt=*", "hour=*.parquet"))
		return len(found) > 0
	}
	wait := time.Now().Add(60 * time.Second)
	if long {
		wait = time.Now().Add(150 * time.Second)
	}
	for !ready() {
		select {
		case code := <-done:
			t.Errorf("%s: exited early with %d\n%s", name, code, stderr.String())
			return false
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(wait) {
			interrupt()
			<-done
			t.Errorf("%s: not ready within %s\n%s", name, time.Until(wait), stderr.String())
			return false
		}
	}
	interrupt() // Ctrl-C
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("%s: exit %d after Ctrl-C\n%s", name, code, stderr.String())
			return false
		}
	case <-time.After(time.Minute):
		t.Errorf("%s: still running a minute after Ctrl-C", name)
		return false
	}
	return true
}

// tailLines is the last n lines of s.
func tailLines(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
