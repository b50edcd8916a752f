package idem_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// apiBudget is the most exported identifiers the root package may have,
// counting top-level names, methods, struct fields and interface methods.
// A newcomer reads this package first: what only store authors need lives
// in package store.
const apiBudget = 60

// TestAPIBudget counts the root package's exported identifiers and fails
// above apiBudget, listing them.
func TestAPIBudget(t *testing.T) {
	names := exportedIdentifiers(t, ".")
	if len(names) > apiBudget {
		t.Errorf("the root package exports %d identifiers, over the budget of %d:\n%s", len(names), apiBudget, strings.Join(names, "\n"))
	}
	t.Logf("%d of %d exported identifiers", len(names), apiBudget)
}

func exportedIdentifiers(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	add := func(name string) { names = append(names, name) }
	fset := token.NewFileSet()
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		{
			for _, decl := range f.Decls {
				switch d := decl.(type) {
				case *ast.FuncDecl:
					if !d.Name.IsExported() {
						continue
					}
					if d.Recv == nil {
						add(d.Name.Name)
						continue
					}
					if recv := receiverName(d.Recv.List[0].Type); ast.IsExported(recv) {
						add(recv + "." + d.Name.Name)
					}
				case *ast.GenDecl:
					for _, spec := range d.Specs {
						switch s := spec.(type) {
						case *ast.ValueSpec:
							for _, n := range s.Names {
								if n.IsExported() {
									add(n.Name)
								}
							}
						case *ast.TypeSpec:
							if !s.Name.IsExported() {
								continue
							}
							add(s.Name.Name)
							members(s.Name.Name, s.Type, add)
						}
					}
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

// members adds a struct's exported fields and an interface's methods.
func members(typ string, expr ast.Expr, add func(string)) {
	var list *ast.FieldList
	switch e := expr.(type) {
	case *ast.StructType:
		list = e.Fields
	case *ast.InterfaceType:
		list = e.Methods
	default:
		return
	}
	for _, field := range list.List {
		for _, n := range field.Names {
			if n.IsExported() {
				add(typ + "." + n.Name)
			}
		}
	}
}

func receiverName(expr ast.Expr) string {
	for {
		switch e := expr.(type) {
		case *ast.StarExpr:
			expr = e.X
		case *ast.IndexExpr:
			expr = e.X
		case *ast.IndexListExpr:
			expr = e.X
		case *ast.Ident:
			return e.Name
		default:
			return ""
		}
	}
}
