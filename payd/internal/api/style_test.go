package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestProblemDetailsShareOneStyle: every problem detail payd writes, in
// a call of fail, an invalid or a payments.RefundRefused, is one
// lowercase sentence with no final period that states a rule or, after a
// semicolon, what to do (see fail). It reads them from the source, so a
// new refusal is held to the style before any test sends it; a detail
// built in a way it cannot read fails it too. On the code before, 15
// details said what was wrong and not what to do.
func TestProblemDetailsShareOneStyle(t *testing.T) {
	fset := token.NewFileSet()
	var files []*ast.File
	for _, pattern := range []string{"*.go", "../payments/refunds.go"} {
		names, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	consts := stringConsts(files)
	seen := 0
	check := func(e ast.Expr) {
		if sel, ok := e.(*ast.SelectorExpr); ok && strings.EqualFold(sel.Sel.Name, "detail") {
			return // an invalid's or a RefundRefused's, checked where it is made
		}
		seen++
		detail, ok := detailText(e, consts)
		if !ok {
			t.Errorf("%s: a detail the style check cannot read: write it as a string, a string constant or fmt.Sprintf of one", fset.Position(e.Pos()))
			return
		}
		if msg := styleFault(detail); msg != "" {
			t.Errorf("%s: detail %q %s", fset.Position(e.Pos()), detail, msg)
		}
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "fail" && len(n.Args) == 5 {
					check(n.Args[4])
				}
			case *ast.CompositeLit:
				switch typeName(n.Type) {
				case "invalid":
					if len(n.Elts) == 3 {
						check(n.Elts[2])
					}
				case "RefundRefused":
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "Detail" {
							check(kv.Value)
						}
					}
				}
			}
			return true
		})
	}
	if seen < 40 {
		t.Fatalf("found %d details, want every one of them (some 50): is the check still reading the source?", seen)
	}
}

// styleFault says how detail breaks the style, or "" if it does not.
func styleFault(detail string) string {
	first, _ := utf8.DecodeRuneInString(detail)
	switch {
	case detail == "":
		return "is empty"
	case first != '%' && !unicode.IsLower(first):
		return "does not start in lower case"
	case strings.HasSuffix(detail, "."), strings.HasSuffix(detail, "!"):
		return "ends in a period or an exclamation mark"
	case strings.TrimSpace(detail) != detail, strings.Contains(detail, "\n"):
		return "has a leading or trailing space, or a line break"
	case strings.Contains(detail, ". "):
		return "has more than one sentence"
	case !strings.Contains(detail, " must ") && !strings.Contains(detail, " is required") && !strings.Contains(detail, "; "):
		return "says neither a rule (… must …, … is required …) nor, after a semicolon, what to do"
	}
	return ""
}

// detailText is the text of a detail expression: a string literal, a
// string constant, or fmt.Sprintf of one (its format, verbs and all).
func detailText(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.CallExpr:
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sprintf" && len(e.Args) > 0 {
			return detailText(e.Args[0], consts)
		}
	}
	return "", false
}

// stringConsts are the string constants the files declare.
func stringConsts(files []*ast.File) map[string]string {
	consts := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							consts[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	return consts
}

func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}
