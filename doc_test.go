package idem_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocCitesRealTests keeps doc.go honest: every test a guarantee cites,
// in parentheses, must exist, as a storetest subtest or a test here.
func TestDocCitesRealTests(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	suite, err := os.ReadFile(filepath.Join("storetest", "storetest.go"))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{}
	files, _ := filepath.Glob("*_test.go")
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
				tests[fn.Name.Name] = true
			}
		}
	}
	// Doc comment lines joined, so a citation may wrap.
	text := strings.Join(strings.Fields(strings.ReplaceAll(string(doc), "//", "")), " ")
	citation := regexp.MustCompile(`^([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)\b`)
	cited := 0
	for _, group := range regexp.MustCompile(`\(([^()]*)\)`).FindAllStringSubmatch(text, -1) {
		for _, part := range strings.Split(group[1], ",") {
			m := citation.FindStringSubmatch(strings.TrimSpace(part))
			if m == nil {
				continue
			}
			name := m[1]
			cited++
			if strings.HasPrefix(name, "Test") {
				if !tests[name] {
					t.Errorf("doc.go cites %s, which is not a test of this package", name)
				}
				continue
			}
			if !strings.Contains(string(suite), `{"`+name+`",`) {
				t.Errorf("doc.go cites %s, which is not a storetest subtest", name)
			}
		}
	}
	if cited < 30 {
		t.Fatalf("found %d citations in doc.go, want the guarantees' 30 or more: is the parser broken?", cited)
	}
}
