package idem_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocCitesRealTests keeps the documentation honest. Every test that a
// doc.go, a package comment or a Markdown file of any module cites must
// exist: as a test function (Test, Benchmark, Fuzz or Example) anywhere in
// the repository, or as a storetest subtest. A citation is a CamelCase name
// that opens a parenthesis or one of its comma-separated parts, as in
// "(ConcurrentClaimsOneWinner, TestFailFast)", or any TestXxx name; code
// blocks are not read.
func TestDocCitesRealTests(t *testing.T) {
	tree := scanTree(t, ".")
	cited := map[string]int{}
	for _, doc := range tree.docs {
		for _, name := range citations(doc.text) {
			if tree.declared[name] && !strings.HasPrefix(name, "Test") {
				continue // names an API, not a test
			}
			cited[doc.path]++
			if !tree.tests[name] && !tree.subtests[name] {
				t.Errorf("%s cites %s, which is neither a test function nor a storetest subtest", doc.path, name)
			}
		}
	}
	// Floors, so that a broken parser or walk fails instead of passing with
	// nothing checked.
	if n := len(tree.subtests); n < 30 {
		t.Errorf("found %d storetest subtests, want 30 or more: is the suite's parser broken?", n)
	}
	if n := cited["doc.go"]; n < 30 {
		t.Errorf("found %d citations in doc.go, want the guarantees' 30 or more: is the parser broken?", n)
	}
	for _, path := range []string{"README.md", filepath.Join("sqlitestore", "doc.go")} {
		if cited[path] == 0 {
			t.Errorf("found no citations in %s: is the walk broken?", path)
		}
	}
}

// TestCitationsParse pins what counts as a citation.
func TestCitationsParse(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"go", "A claim wins (ConcurrentClaimsOneWinner, TestFailFast: 3 runs),\n" +
			"wraps (EngineStorm:\n64 goroutines), not (Config.Errors), (see Waiting),\n" +
			"(PostgreSQL 15); a bare TestLostRecordIsLoud counts,\n" +
			"\tbut not code: (EngineMismatch)\n",
			"ConcurrentClaimsOneWinner EngineStorm TestFailFast TestLostRecordIsLoud"},
		{"markdown", markdownProse("one (`TestTwoHandlesOneFile/wal`; `EngineStorm`),\n" +
			"not a command (`-bench='(FirstExecution|Replay)/c16'`)\n" +
			"```\n(WaitWokenOnRelease) TestFailFast\n```\n"),
			"EngineStorm TestTwoHandlesOneFile"},
	} {
		if got := strings.Join(citations(c.text), " "); got != c.want {
			t.Errorf("%s: citations = %q, want %q", c.name, got, c.want)
		}
	}
}

// A document is the prose of a doc.go, a package comment or a Markdown
// file, with its code blocks removed.
type document struct{ path, text string }

type sourceTree struct {
	docs     []document
	tests    map[string]bool // test, benchmark, fuzz and example functions
	subtests map[string]bool // storetest subtests
	declared map[string]bool // identifiers of the non-test code
}

// scanTree walks every module under root, skipping .git and testdata.
func scanTree(t *testing.T, root string) sourceTree {
	t.Helper()
	tree := sourceTree{tests: map[string]bool{}, subtests: map[string]bool{}, declared: map[string]bool{}}
	// A storetest case is a {"Name", testName} entry of a suite's list.
	subtest := regexp.MustCompile(`\{"([A-Z][A-Za-z0-9]*)",\s*test[A-Za-z0-9]*`)
	testFunc := regexp.MustCompile(`^(Test|Benchmark|Fuzz|Example)([A-Z_]|$)`)
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		dir, name := filepath.Dir(path), d.Name()
		switch {
		case strings.HasSuffix(name, ".md"):
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			tree.docs = append(tree.docs, document{path, markdownProse(string(src))})
		case strings.HasSuffix(name, "_test.go"):
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && testFunc.MatchString(fn.Name.Name) {
					tree.tests[fn.Name.Name] = true
				}
			}
		case strings.HasSuffix(name, ".go"):
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			if name == "doc.go" {
				var text strings.Builder
				for _, c := range f.Comments {
					text.WriteString(c.Text())
				}
				tree.docs = append(tree.docs, document{path, text.String()})
			} else if f.Doc != nil {
				tree.docs = append(tree.docs, document{path, f.Doc.Text()})
			}
			declare(tree.declared, f)
			if filepath.Base(dir) == "storetest" {
				for _, m := range subtest.FindAllStringSubmatch(string(src), -1) {
					tree.subtests[m[1]] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// declare adds the names f declares to names: functions, methods, types,
// constants, variables, struct fields and interface methods.
func declare(names map[string]bool, f *ast.File) {
	for _, decl := range f.Decls {
		ast.Inspect(decl, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				names[n.Name.Name] = true
				return false
			case *ast.TypeSpec:
				names[n.Name.Name] = true
			case *ast.ValueSpec:
				for _, id := range n.Names {
					names[id.Name] = true
				}
			case *ast.Field:
				for _, id := range n.Names {
					names[id.Name] = true
				}
			}
			return true
		})
	}
}

// markdownProse returns src without its fenced code blocks. A code span
// that holds one name, such as `TestFailFast` or `Config.MaxWait`, keeps
// the name, so "(`TestFailFast`)" is a citation; any other span, a command
// say, is dropped.
func markdownProse(src string) string {
	var prose strings.Builder
	fenced := false
	for line := range strings.Lines(src) {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			prose.WriteString(codeSpan.ReplaceAllStringFunc(line, func(span string) string {
				if span = strings.Trim(span, "`"); oneName.MatchString(span) {
					return span
				}
				return "code"
			}))
		}
	}
	return prose.String()
}

var (
	// citationName is a CamelCase name of two words or more; what follows
	// it (a colon and a remark, a /subtest) is commentary.
	citationName = regexp.MustCompile(`^([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)\b`)
	testName     = regexp.MustCompile(`\bTest[A-Z][A-Za-z0-9_]*`)
	parenthesis  = regexp.MustCompile(`\(([^()]*)\)`)
	codeSpan     = regexp.MustCompile("`[^`]*`")
	oneName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./]*$`)
	// properNouns are CamelCase words of prose, never test names.
	properNouns = map[string]bool{"PostgreSQL": true, "GitHub": true, "OpenTelemetry": true, "MySQL": true}
)

// citations returns the names text cites: the CamelCase names that open a
// parenthesis or one of its parts, then every TestXxx name. Lines that
// start with a tab are a Go doc comment's code and are skipped; the others
// are joined, so a citation may wrap.
func citations(text string) []string {
	var prose []string
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, "\t") {
			prose = append(prose, line)
		}
	}
	text = strings.Join(strings.Fields(strings.Join(prose, "")), " ")
	var names []string
	for _, group := range parenthesis.FindAllStringSubmatch(text, -1) {
		for _, part := range strings.FieldsFunc(group[1], func(r rune) bool { return r == ',' || r == ';' }) {
			if m := citationName.FindStringSubmatch(strings.TrimSpace(part)); m != nil && !properNouns[m[1]] && !strings.HasPrefix(m[1], "Test") {
				names = append(names, m[1])
			}
		}
	}
	return append(names, testName.FindAllString(text, -1)...)
}
