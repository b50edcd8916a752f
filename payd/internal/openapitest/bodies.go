package openapitest

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// bodies are the schemas of every request and response body of a
// document, compiled once (kin-openapi compiles a schema each time it
// validates with one, which made the busiest tests three times slower).
type bodies struct {
	request  map[string]bodyRule // by operation: "POST /v1/charges"
	response map[string]bodyRule // by operation and status: "POST /v1/charges 202"
	problem  *jsonschema.Schema  // the body of an answer to a request with no operation
}

// bodyRule is what a document says of one body: whether it is required,
// and its schema by media type. No media type: the body is empty.
type bodyRule struct {
	required bool
	schemas  map[string]*jsonschema.Schema
}

const docURL = "openapi.json"

// compileBodies compiles the body schemas of doc, the document as JSON
// values.
func compileBodies(doc map[string]any) (*bodies, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	problem, err := c.Compile(docURL + "#/components/schemas/Problem")
	if err != nil {
		return nil, fmt.Errorf("compiling the Problem schema: %w", err)
	}
	b := &bodies{request: map[string]bodyRule{}, response: map[string]bodyRule{}, problem: problem}
	n := 0
	compile := func(content any) (map[string]*jsonschema.Schema, error) {
		out := map[string]*jsonschema.Schema{}
		media, _ := content.(map[string]any)
		for mt, m := range media {
			schema := object(m)["schema"]
			if schema == nil {
				continue
			}
			n++
			url := "body-" + strconv.Itoa(n) + ".json"
			if err := c.AddResource(url, intoDoc(schema)); err != nil {
				return nil, err
			}
			s, err := c.Compile(url)
			if err != nil {
				return nil, fmt.Errorf("compiling the schema of %s: %w", mt, err)
			}
			out[mt] = s
		}
		return out, nil
	}
	for path, item := range object(doc["paths"]) {
		for method, op := range object(item) {
			opKey := strings.ToUpper(method) + " " + path
			if rb := resolve(doc, object(op)["requestBody"]); rb != nil {
				schemas, err := compile(rb["content"])
				if err != nil {
					return nil, fmt.Errorf("%s: request: %w", opKey, err)
				}
				required, _ := rb["required"].(bool)
				b.request[opKey] = bodyRule{required: required, schemas: schemas}
			}
			for status, resp := range object(object(op)["responses"]) {
				schemas, err := compile(resolve(doc, resp)["content"])
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", opKey, status, err)
				}
				b.response[opKey+" "+status] = bodyRule{schemas: schemas}
			}
		}
	}
	return b, nil
}

// checkRequest checks the body of a request to op.
func (b *bodies) checkRequest(op string, header http.Header, body []byte) error {
	rule, ok := b.request[op]
	switch {
	case !ok && len(body) > 0:
		return errors.New("the operation takes no body")
	case !ok, len(body) == 0 && !rule.required:
		return nil
	case len(body) == 0:
		return errors.New("the operation needs a body")
	}
	return rule.check(header, body)
}

// checkResponse checks the body of op's response with status.
func (b *bodies) checkResponse(op string, status int, header http.Header, body []byte) error {
	rule := b.response[op+" "+strconv.Itoa(status)]
	if len(rule.schemas) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%d has no body in the document, and payd sent %d bytes", status, len(body))
		}
		return nil
	}
	return rule.check(header, body)
}

// check checks body, of the media type header names, against its schema.
func (rule bodyRule) check(header http.Header, body []byte) error {
	mt, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", header.Get("Content-Type"), err)
	}
	schema, ok := rule.schemas[mt]
	if !ok {
		return fmt.Errorf("the document gives no body of type %s here", mt)
	}
	var v any = string(body)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
			return fmt.Errorf("the %s body is not JSON: %w", mt, err)
		}
	}
	if err := schema.Validate(v); err != nil {
		return fmt.Errorf("the %s body: %w", mt, err)
	}
	return nil
}

// resolve follows v's $ref within doc, if it has one.
func resolve(doc map[string]any, v any) map[string]any {
	m := object(v)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var at any = doc
	for _, token := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		at = object(at)[strings.NewReplacer("~1", "/", "~0", "~").Replace(token)]
	}
	return object(at)
}

// intoDoc copies schema with each of its references into the document
// made absolute, so that it compiles as a resource of its own.
func intoDoc(schema any) any {
	switch s := schema.(type) {
	case map[string]any:
		out := make(map[string]any, len(s))
		for k, v := range s {
			if ref, ok := v.(string); ok && k == "$ref" && strings.HasPrefix(ref, "#") {
				out[k] = docURL + ref
				continue
			}
			out[k] = intoDoc(v)
		}
		return out
	case []any:
		out := make([]any, len(s))
		for i, v := range s {
			out[i] = intoDoc(v)
		}
		return out
	}
	return schema
}

func object(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// decodeDoc reads a document as JSON values, numbers exact.
func decodeDoc(document []byte) (map[string]any, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(document))
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the document is not a JSON object")
	}
	return m, nil
}
