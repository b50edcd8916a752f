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

// TestDocCitesRealTests keeps the documentation honest: every test that a
// doc.go, a package comment or a Markdown file of any module cites, in
// parentheses, must exist, as a test function (Test, Benchmark, Fuzz or
// Example) somewhere in the repository or as a storetest subtest.
func TestDocCitesRealTests(t *testing.T) {
	tree := scanTree(t, ".")
	cited := map[string]int{}
	for _, doc := range tree.docs {
		for _, name := range citations(doc.text) {
			cited[doc.path]++
			if !tree.tests[name] && !tree.subtests[name] {
				t.Errorf("%s cites %s, which is neither a test function nor a storetest subtest", doc.path, name)
			}
		}
	}
	// Floors, so that a broken parser or walk fails instead of passing with
	// nothing checked.
	if len(tree.subtests) < 40 {
		t.Errorf("found %d storetest subtests, want 40 or more: is the suite's parser broken?", len(tree.subtests))
	}
	if n := cited["doc.go"]; n < 30 {
		t.Errorf("found %d citations in doc.go, want the guarantees' 30 or more: is the parser broken?", n)
	}
	for _, path := range []string{"README.md", filepath.Join("sqlitestore", "doc.go"), filepath.Join("idemhttp", "doc.go")} {
		if cited[path] == 0 {
			t.Errorf("found no citations in %s: is the walk broken?", path)
		}
	}
}

// TestCitationsParse pins what counts as a citation.
func TestCitationsParse(t *testing.T) {
	text := "// A claim wins (ConcurrentClaimsOneWinner, TestFailFast: 3 runs),\n" +
		"// wraps (EngineStorm:\n// 64 goroutines), not (Config.Errors), (`RunTx`), (see Waiting)\n" +
		"// or (TestTwoHandlesOneFile/wal)."
	got := strings.Join(citations(text), " ")
	want := "ConcurrentClaimsOneWinner TestFailFast EngineStorm TestTwoHandlesOneFile"
	if got != want {
		t.Errorf("citations = %q, want %q", got, want)
	}
}

type document struct{ path, text string }

type sourceTree struct {
	docs     []document      // every doc.go, package comment and Markdown file
	tests    map[string]bool // test, benchmark, fuzz and example functions
	subtests map[string]bool // storetest subtests
}

// scanTree walks every module under root, skipping .git and testdata.
func scanTree(t *testing.T, root string) sourceTree {
	t.Helper()
	tree := sourceTree{tests: map[string]bool{}, subtests: map[string]bool{}}
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
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".md"):
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			tree.docs = append(tree.docs, document{path, string(src)})
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
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				return err
			}
			if name == "doc.go" {
				src, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				tree.docs = append(tree.docs, document{path, string(src)})
			} else if f.Doc != nil {
				tree.docs = append(tree.docs, document{path, f.Doc.Text()})
			}
			if filepath.Base(filepath.Dir(path)) == "storetest" {
				src, err := os.ReadFile(path)
				if err != nil {
					return err
				}
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

var (
	// A citation is a CamelCase name of two words or more that starts one
	// comma-separated part of a parenthesis; what follows it (a colon and a
	// remark, a /subtest) is commentary.
	citationName = regexp.MustCompile(`^([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)\b`)
	parenthesis  = regexp.MustCompile(`\(([^()]*)\)`)
)

// citations returns the names text cites. Comment markers are dropped and
// lines joined, so a citation may wrap.
func citations(text string) []string {
	text = strings.Join(strings.Fields(strings.ReplaceAll(text, "//", "")), " ")
	var names []string
	for _, group := range parenthesis.FindAllStringSubmatch(text, -1) {
		for part := range strings.SplitSeq(group[1], ",") {
			if m := citationName.FindStringSubmatch(strings.TrimSpace(part)); m != nil {
				names = append(names, m[1])
			}
		}
	}
	return names
}
