// Package openapitest holds HTTP traffic to an OpenAPI 3.1 document, in
// tests: Checker.Transport wraps a client's transport and fails the test
// on any request or response the document does not allow. payd's tests
// send their requests to payd through it, with payd's own document
// (api.OpenAPI), so that the document says what payd does.
//
// Only tests import this package: the OpenAPI library it uses is never
// linked into payd (TestProductionBuildLinksNoOpenAPILibrary).
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Checker checks requests and responses against one OpenAPI document.
type Checker struct {
	router routers.Router
	bodies *bodies
}

// New loads and validates document, an OpenAPI 3.1 document in JSON whose
// components hold a Problem schema: the body of the 404 and 405 answers
// to requests it has no operation for.
func New(document []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("openapitest: loading the document: %w", err)
	}
	if doc.OpenAPIMajorMinor() != "3.1" {
		return nil, fmt.Errorf("openapitest: the document is OpenAPI %s, not 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapitest: the document is not valid OpenAPI: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapitest: routing the document: %w", err)
	}
	raw, err := decodeDoc(document)
	if err != nil {
		return nil, fmt.Errorf("openapitest: %w", err)
	}
	bodies, err := compileBodies(raw)
	if err != nil {
		return nil, fmt.Errorf("openapitest: %w", err)
	}
	return &Checker{router: router, bodies: bodies}, nil
}

// Must is New for tests: it fails t if the document cannot be loaded.
func Must(t testing.TB, document []byte) *Checker {
	t.Helper()
	c, err := New(document)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Check checks one exchange: req, whose body was reqBody, answered with
// resp, whose body was respBody. The response must be one the document
// gives the request's operation, with that status, headers and body. A
// request the document does not allow (a test's deliberate mistake) must
// be refused, with a 4xx: an answer of any other status means the
// document refuses what payd takes. A request for a path the document
// does not have must get 404, and one for a method its path does not
// take 405 with an Allow header, each with a Problem body; either may get
// 431 instead, for its headers.
func (c *Checker) Check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	ctx := req.Context()
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx) // the client gave up; its answer still counts
	}
	route, params, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return c.checkUnrouted(resp, respBody, http.StatusNotFound)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return c.checkUnrouted(resp, respBody, http.StatusMethodNotAllowed)
	case err != nil:
		return fmt.Errorf("finding the operation: %w", err)
	}
	op := req.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{
		Request:    withBody(req, reqBody),
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: bearer, MultiError: true, ExcludeRequestBody: true},
	}
	reqErr := errors.Join(openapi3filter.ValidateRequest(ctx, in), c.bodies.checkRequest(op, req.Header, reqBody))
	respErr := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: true},
	})
	if respErr == nil {
		respErr = c.bodies.checkResponse(op, resp.StatusCode, resp.Header, respBody)
	}
	var errs []error
	if respErr != nil {
		errs = append(errs, fmt.Errorf("the response (%d %s) is not one the document gives: %w", resp.StatusCode, oneLine(respBody), respErr))
	}
	if reqErr != nil && (resp.StatusCode < 400 || resp.StatusCode > 499) {
		errs = append(errs, fmt.Errorf("payd answered %d to a request the document refuses: %w", resp.StatusCode, reqErr))
	}
	return errors.Join(errs...)
}

// checkUnrouted checks the answer to a request with no operation in the
// document: status, or 431, with a Problem body.
func (c *Checker) checkUnrouted(resp *http.Response, body []byte, status int) error {
	if resp.StatusCode != status && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		return fmt.Errorf("the document has no operation for the request, and payd answered %d %s, not %d", resp.StatusCode, oneLine(body), status)
	}
	if status == http.StatusMethodNotAllowed && resp.StatusCode == status && resp.Header.Get("Allow") == "" {
		return errors.New("405 without an Allow header")
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Errorf("%d is %s, not application/problem+json", resp.StatusCode, ct)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%d's body is not JSON: %w", resp.StatusCode, err)
	}
	if err := c.bodies.problem.Validate(v); err != nil {
		return fmt.Errorf("%d's body is not a Problem: %w", resp.StatusCode, err)
	}
	return nil
}

// bearer checks the document's bearer scheme: an Authorization header of
// the scheme Bearer, in any case as RFC 9110 has it, and a token. Whether
// payd knows the token is payd's to say.
func bearer(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimLeft(token, " ") == "" {
		return errors.New("no Authorization: Bearer header")
	}
	return nil
}

// withBody is a copy of req to validate, reading body.
func withBody(req *http.Request, body []byte) *http.Request {
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

func oneLine(body []byte) string {
	const max = 300
	s := strings.TrimSpace(string(body))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
