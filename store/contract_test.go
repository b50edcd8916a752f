package store_test

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

// TestContractCitesConformance: every method of Store and TxStore states
// its guarantee with at least one citation in parentheses, and every cited
// name is a storetest subtest (or, where a comment says so, a test of a
// store module).
func TestContractCitesConformance(t *testing.T) {
	known := knownTests(t)
	fset := token.NewFileSet()
	for _, file := range []string{"store.go", "tx.go"} {
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			iface, ok := spec.Type.(*ast.InterfaceType)
			if !ok {
				return false
			}
			for _, m := range iface.Methods.List {
				if len(m.Names) == 0 {
					continue // the embedded Store
				}
				method := spec.Name.Name + "." + m.Names[0].Name
				cited := citations(m.Doc.Text())
				if len(cited) == 0 {
					t.Errorf("%s cites no conformance subtest", method)
				}
				for _, name := range cited {
					if !known[name] {
						t.Errorf("%s cites %s, which is no storetest subtest nor store test", method, name)
					}
				}
			}
			return false
		})
	}
}

var citationName = regexp.MustCompile(`^(?:storetest\.)?([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)$`)

// citations returns the CamelCase names cited in parentheses in doc.
func citations(doc string) []string {
	text := strings.Join(strings.Fields(doc), " ")
	var names []string
	for _, group := range regexp.MustCompile(`\(([^()]*)\)`).FindAllStringSubmatch(text, -1) {
		for _, part := range strings.Split(group[1], ",") {
			fields := strings.Fields(part)
			if len(fields) == 0 {
				continue
			}
			if m := citationName.FindStringSubmatch(strings.TrimSuffix(fields[len(fields)-1], ".")); m != nil {
				names = append(names, m[1])
			}
		}
	}
	return names
}

// knownTests returns storetest's subtest names and suites, and the test
// functions of the store modules.
func knownTests(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	subtest := regexp.MustCompile(`\{"([A-Z]\w+)",`)
	suite := regexp.MustCompile(`(?m)^func (Run\w*)\b`)
	testFunc := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	for _, pattern := range []string{"../storetest/*.go", "../*store/*_test.go"} {
		paths, err := filepath.Glob(pattern)
		if err != nil || len(paths) == 0 {
			t.Fatalf("no files match %s: %v", pattern, err)
		}
		for _, path := range paths {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, re := range []*regexp.Regexp{subtest, suite, testFunc} {
				for _, m := range re.FindAllStringSubmatch(string(src), -1) {
					known[m[1]] = true
				}
			}
		}
	}
	if !known["ClaimAbsentAcquires"] || !known["TestDeadlockIsRetried"] {
		t.Fatal("the conformance suite's or the stores' tests were not found: is the parser broken?")
	}
	return known
}
