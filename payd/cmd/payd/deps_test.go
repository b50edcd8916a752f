package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBuildLinksNoOpenAPILibrary: the OpenAPI document is
// checked by the tests only; payd itself serves it as bytes and links
// neither the checker nor the libraries it uses.
func TestProductionBuildLinksNoOpenAPILibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, forbidden := range []string{"/internal/openapitest", "getkin/kin-openapi", "santhosh-tekuri/jsonschema"} {
		if strings.Contains(string(out), forbidden) {
			t.Errorf("a production payd links %s", forbidden)
		}
	}
}
