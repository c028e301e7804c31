package twin

import (
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/steward-iot/steward"
)

// noLoader refuses every schema a $ref would load: a schema is one
// self-contained document, so that a schema cannot make the server read a
// local file or fetch a URL.
type noLoader struct{}

// Load implements jsonschema.URLLoader.
func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s: only references within the schema itself are allowed", url)
}

// printer formats the validator's reasons, in English as the API speaks.
var printer = message.NewPrinter(language.English)

// schemaURL names the one resource of each compilation.
const schemaURL = "steward:config-schema.json"

// compileSchema compiles a JSON Schema (draft 2020-12 unless it says
// otherwise in $schema); CodeInvalid with the reason when it is not one.
func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	doc, err := decode(raw)
	if err != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "configuration schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "configuration schema: %v", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "configuration schema is not a valid JSON Schema: %s", oneLine(err.Error()))
	}
	return s, nil
}

// SchemaError is a configuration that breaks a schema: Path is the JSON
// pointer of the failing value in the configuration ("" for the whole
// document), Reason what is wrong there.
type SchemaError struct {
	Path   string
	Reason string
}

// Error implements error.
func (e *SchemaError) Error() string {
	p := e.Path
	if p == "" {
		p = "/"
	}
	return fmt.Sprintf("configuration does not match its schema at %s: %s", p, e.Reason)
}

// validate checks doc (decoded with decode) against schema; the error
// names the path of the first failing value, the deepest cause the
// validator found.
func validate(schema *jsonschema.Schema, doc any) error {
	err := schema.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return steward.WrapError(steward.CodeInvalid, err, "configuration does not match its schema")
	}
	leaf := deepest(ve)
	se := &SchemaError{Path: pointer(leaf.InstanceLocation), Reason: oneLine(leaf.ErrorKind.LocalizedString(printer))}
	return steward.WrapError(steward.CodeInvalid, se, "%s", se.Error())
}

// deepest follows the first cause down to the error with no causes: the
// value that actually failed, not the object that holds it.
func deepest(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		e = e.Causes[0]
	}
	return e
}

// pointer writes an instance location as a JSON pointer (RFC 6901).
func pointer(loc []string) string {
	var b strings.Builder
	for _, tok := range loc {
		b.WriteByte('/')
		b.WriteString(escapePointer(tok))
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
