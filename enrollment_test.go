package steward

import (
	"reflect"
	"testing"
)

func TestEnrollmentGroupPolicy(t *testing.T) {
	t.Parallel()
	g := EnrollmentGroup{
		Name:     "gateways",
		Models:   []string{"gw-100", "gw-200"},
		Firmware: map[string][]string{"gw-100": {"1.2.0", "1.3.0"}},
		Serials:  []string{"SN1", "SN2"},
		Strict:   true,
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dev  Device
		want []string
	}{
		{"approved", Device{Model: "gw-100", Firmware: "1.3.0", Serial: "SN1"}, nil},
		{"model without firmware rule", Device{Model: "gw-200", Firmware: "0.1", Serial: "SN2"}, nil},
		{"unapproved firmware", Device{Model: "gw-100", Firmware: "1.1.0", Serial: "SN1"}, []string{`firmware "1.1.0" is not approved for model "gw-100"`}},
		{"no firmware", Device{Model: "gw-100", Serial: "SN1"}, []string{"no firmware version reported"}},
		{"model not allowed", Device{Model: "cam-1", Serial: "SN1"}, []string{`model "cam-1" is not allowed in enrollment group "gateways"`}},
		{"no model", Device{Serial: "SN1"}, []string{"no model reported"}},
		{"serial not listed", Device{Model: "gw-200", Serial: "SN9"}, []string{`serial "SN9" is not in the allow-list`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := g.CheckAttributes(&tt.dev); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CheckAttributes = %q, want %q", got, tt.want)
			}
		})
	}
	if !g.SerialAllowed("SN2") || g.SerialAllowed("SN3") {
		t.Error("strict serial allow-list")
	}
	open := EnrollmentGroup{Name: "open"}
	if !open.SerialAllowed("anything") {
		t.Error("a non-strict group refuses serials")
	}
}

func TestEnrollmentGroupValidate(t *testing.T) {
	t.Parallel()
	for name, g := range map[string]EnrollmentGroup{
		"no name":                {},
		"strict without serials": {Name: "x", Strict: true},
		"firmware for unknown":   {Name: "x", Models: []string{"a"}, Firmware: map[string][]string{"b": {"1"}}},
		"firmware without list":  {Name: "x", Firmware: map[string][]string{"a": nil}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := g.Validate(); ErrorCode(err) != CodeInvalid {
				t.Errorf("Validate = %v, want invalid", err)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	inner := Errorf(CodeNotFound, "device %s not found", "d-1")
	wrapped := WrapError(CodeInternal, inner, "load")
	if ErrorCode(inner) != CodeNotFound || ErrorCode(wrapped) != CodeInternal {
		t.Error("codes")
	}
	if ErrorMessage(wrapped) != "internal error" {
		t.Errorf("internal message leaked: %q", ErrorMessage(wrapped))
	}
	if ErrorMessage(inner) != "device d-1 not found" {
		t.Errorf("message: %q", ErrorMessage(inner))
	}
	if CodeNotFound.HTTPStatus() != 404 || CodeUnsupported.HTTPStatus() != 415 || Code("x").HTTPStatus() != 500 {
		t.Error("HTTP status mapping")
	}
}
