package idemhttp

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestProblemDetailsStyle: every detail the middleware answers with is
// one lowercase sentence without a final period, as payd's are.
func TestProblemDetailsStyle(t *testing.T) {
	for _, p := range problems {
		first, _ := utf8.DecodeRuneInString(p.detail)
		if !unicode.IsLower(first) || strings.HasSuffix(p.detail, ".") || strings.Contains(p.detail, ". ") {
			t.Errorf("%s: detail %q is not one lowercase sentence without a final period", p.code, p.detail)
		}
	}
}
