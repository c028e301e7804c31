package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docURL is where the schema compiler finds the OpenAPI document; it is
// added as a resource, never fetched.
const docURL = "http://steward.test/openapi.json"

// openAPIDoc is the embedded OpenAPI document with its schemas compiled on
// demand (JSON Schema 2020-12, as OpenAPI 3.1 uses).
type openAPIDoc struct {
	raw   map[string]any
	c     *jsonschema.Compiler
	mu    sync.Mutex
	cache map[string]*jsonschema.Schema
}

func loadDoc(t testing.TB) *openAPIDoc {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(openAPIDocument, &raw); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, inst); err != nil {
		t.Fatalf("add openapi.json: %v", err)
	}
	return &openAPIDoc{raw: raw, c: c, cache: map[string]*jsonschema.Schema{}}
}

// schema compiles the schema at a JSON pointer of the document.
func (d *openAPIDoc) schema(pointer string) (*jsonschema.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.cache[pointer]; ok {
		return s, nil
	}
	s, err := d.c.Compile(docURL + "#" + pointer)
	if err != nil {
		return nil, err
	}
	d.cache[pointer] = s
	return s, nil
}

// ptr escapes one JSON pointer token (RFC 6901).
func ptr(tokens ...string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(tok))
	}
	return b.String()
}

// at follows a JSON pointer made by ptr.
func (d *openAPIDoc) at(pointer string) (any, bool) {
	var cur any = d.raw
	for _, tok := range strings.Split(pointer, "/")[1:] {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// deref follows a local $ref (of a response or request body object).
func (d *openAPIDoc) deref(pointer string) (string, map[string]any, bool) {
	for range 8 {
		v, ok := d.at(pointer)
		m, isMap := v.(map[string]any)
		if !ok || !isMap {
			return "", nil, false
		}
		ref, isRef := m["$ref"].(string)
		if !isRef {
			return pointer, m, true
		}
		pointer = strings.TrimPrefix(ref, "#")
	}
	return "", nil, false
}

// checkingTransport checks every answer of the tests against the OpenAPI
// document: the status must be documented for the operation, and the body
// must match the schema of its media type. The request body of a
// successful call must match the documented request schema. So the
// document cannot drift from what the server really does.
type checkingTransport struct {
	t    testing.TB
	doc  *openAPIDoc
	api  *Server
	next http.RoundTripper
}

func (c *checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	probe := req.Clone(req.Context())
	probe.Body = io.NopCloser(bytes.NewReader(reqBody))
	if err := c.check(probe, reqBody, resp, body); err != nil {
		c.t.Errorf("%s %s → %d: does not match openapi.json: %v\nbody: %s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
	return resp, nil
}

func (c *checkingTransport) check(req *http.Request, reqBody []byte, resp *http.Response, body []byte) error {
	_, pattern := c.api.mux.Handler(req)
	method, path, routed := strings.Cut(pattern, " ")
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !routed {
		// The router's own 404 and 405: problem documents.
		if mt != ProblemContentType {
			return fmt.Errorf("fallback answer is %q, not a problem", mt)
		}
		return c.validate(ptr("components", "schemas", "Problem"), body)
	}
	if method == "HEAD" {
		method = "GET"
	}
	op := ptr("paths", path, strings.ToLower(method))
	if _, ok := c.doc.at(op); !ok {
		return fmt.Errorf("operation %s %s is not documented", method, path)
	}
	respPtr, respObj, ok := c.doc.deref(op + ptr("responses", fmt.Sprint(resp.StatusCode)))
	if !ok {
		if respPtr, respObj, ok = c.doc.deref(op + ptr("responses", "default")); !ok {
			return fmt.Errorf("status %d is not documented", resp.StatusCode)
		}
	}
	content, _ := respObj["content"].(map[string]any)
	if len(body) == 0 && resp.Request.Method != "HEAD" {
		if len(content) > 0 && resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("empty body where %v is documented", keys(content))
		}
	} else if resp.Request.Method != "HEAD" {
		if _, ok := content[mt]; !ok {
			return fmt.Errorf("media type %q is not documented (have %v)", mt, keys(content))
		}
		if strings.HasSuffix(mt, "json") {
			if err := c.validate(respPtr+ptr("content", mt, "schema"), body); err != nil {
				return fmt.Errorf("response: %w", err)
			}
		}
	}
	if resp.StatusCode/100 == 2 && len(reqBody) > 0 {
		rbPtr, _, ok := c.doc.deref(op + "/requestBody")
		if !ok {
			return fmt.Errorf("a request body was accepted but none is documented")
		}
		rmt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
		if err := c.validate(rbPtr+ptr("content", rmt, "schema"), reqBody); err != nil {
			return fmt.Errorf("accepted request body: %w", err)
		}
	}
	return nil
}

func (c *checkingTransport) validate(schemaPtr string, body []byte) error {
	s, err := c.doc.schema(schemaPtr)
	if err != nil {
		return fmt.Errorf("schema %s: %w", schemaPtr, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	return s.Validate(inst)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesRoutes checks the document against the router: every
// registered (method, path) is documented, every documented one is
// registered, with the right security.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	if v, _ := doc.raw["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi = %q, want 3.1.x", v)
	}
	s := New(Config{})
	if len(s.routes) == 0 {
		t.Fatal("no routes registered")
	}
	routed := map[string]route{}
	for _, r := range s.routes {
		routed[r.method+" "+r.path] = r
	}
	documented := map[string]bool{}
	paths, _ := doc.raw["paths"].(map[string]any)
	for path, item := range paths {
		for method := range item.(map[string]any) {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for key, r := range routed {
		t.Run(key, func(t *testing.T) {
			if !documented[key] {
				t.Fatalf("route %s is not in openapi.json", key)
			}
			op, _ := doc.at(ptr("paths", r.path, strings.ToLower(r.method)))
			sec, hasSec := op.(map[string]any)["security"]
			isPublic := hasSec && len(sec.([]any)) == 0
			if isPublic != (r.perm == public) {
				t.Errorf("documented as public=%v, served with permission %q", isPublic, r.perm)
			}
			if r.perm == public {
				return
			}
			if _, ok := doc.at(ptr("paths", r.path, strings.ToLower(r.method), "responses", "401")); !ok {
				t.Errorf("an authenticated route must document 401")
			}
			if _, ok := doc.at(ptr("paths", r.path, strings.ToLower(r.method), "responses", "403")); !ok {
				t.Errorf("a route that needs a permission must document 403")
			}
			if got, _ := doc.at(ptr("paths", r.path, strings.ToLower(r.method), "x-permission")); got != string(r.perm) {
				t.Errorf("x-permission is %v, the route needs %q", got, r.perm)
			}
		})
	}
	for key := range documented {
		if _, ok := routed[key]; !ok {
			t.Errorf("openapi.json documents %s, which is not routed", key)
		}
	}
}

// TestOpenAPIDocumentIsSound checks what a validator would: every $ref
// resolves, every schema compiles as JSON Schema 2020-12, operation IDs are
// unique, and every operation says what it answers.
func TestOpenAPIDocumentIsSound(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				refs = append(refs, r)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc.raw)
	for _, r := range refs {
		if !strings.HasPrefix(r, "#/") {
			t.Errorf("$ref %q is not local", r)
			continue
		}
		if _, ok := doc.at(strings.TrimPrefix(r, "#")); !ok {
			t.Errorf("$ref %q does not resolve", r)
		}
	}
	schemas, _ := doc.raw["components"].(map[string]any)["schemas"].(map[string]any)
	for name := range schemas {
		if _, err := doc.schema(ptr("components", "schemas", name)); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
	var ids []string
	for path, item := range doc.raw["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			o := op.(map[string]any)
			id, _ := o["operationId"].(string)
			if id == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			ids = append(ids, id)
			if rs, _ := o["responses"].(map[string]any); len(rs) == 0 {
				t.Errorf("%s %s documents no responses", method, path)
			}
			if strings.Contains(path, "{id}") {
				if _, ok := doc.at(ptr("paths", path, "parameters")); !ok {
					t.Errorf("%s has a path parameter but no parameters", path)
				}
			}
		}
	}
	slices.Sort(ids)
	if c := slices.Compact(slices.Clone(ids)); len(c) != len(ids) {
		t.Errorf("operation IDs are not unique: %v", ids)
	}
}

// TestOpenAPIServed checks that the document is served without a token, as
// the same bytes.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.must(t, http.StatusOK, "GET", "/api/v1/openapi.json", "", nil)
	if !bytes.Equal(r.body, openAPIDocument) {
		t.Fatal("served document differs from the embedded one")
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
}
