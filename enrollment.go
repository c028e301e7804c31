package steward

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// EnrollmentGroup binds a manufacturer CA to a tenant and a policy. A device
// whose factory certificate chains to CAPEM may enroll into the tenant; its
// first attributes report is then checked against the policy.
type EnrollmentGroup struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	Name     string `json:"name"`
	CAPEM    string `json:"ca_pem"` // the manufacturer CA certificate
	// CAFingerprint is the SHA-256 of the CA certificate's DER (hex). A
	// manufacturer CA can be registered once across all tenants, so that a
	// factory certificate always names exactly one tenant.
	CAFingerprint string `json:"ca_fingerprint"`
	// CASubjectHash is the SHA-256 of the CA's raw subject (hex), the key the
	// device plane looks a factory certificate's issuer up by.
	CASubjectHash string              `json:"-"`
	Models        []string            `json:"models,omitempty"`   // allowed models; empty allows any
	Firmware      map[string][]string `json:"firmware,omitempty"` // approved firmware versions per model; a model absent here has no firmware restriction
	Labels        map[string]string   `json:"labels,omitempty"`   // copied onto each device at enrollment
	Serials       []string            `json:"serials,omitempty"`  // allow-list of serial numbers
	Strict        bool                `json:"strict"`             // refuse serials not in Serials at enrollment
	CreatedAt     time.Time           `json:"created_at"`
}

// Validate checks the group's own consistency.
func (g *EnrollmentGroup) Validate() error {
	if g.Name == "" || len(g.Name) > 128 {
		return Errorf(CodeInvalid, "enrollment group name must be 1 to 128 characters")
	}
	if g.Strict && len(g.Serials) == 0 {
		return Errorf(CodeInvalid, "strict mode needs a list of serial numbers")
	}
	for model, versions := range g.Firmware {
		if model == "" || len(versions) == 0 {
			return Errorf(CodeInvalid, "firmware policy needs MODEL=VERSION[,VERSION…]")
		}
		if len(g.Models) > 0 && !slices.Contains(g.Models, model) {
			return Errorf(CodeInvalid, "firmware policy names model %q, which is not among the allowed models", model)
		}
	}
	return nil
}

// SerialAllowed reports whether a serial number may enroll through the
// group: always when the group is not strict.
func (g *EnrollmentGroup) SerialAllowed(serial string) bool {
	return !g.Strict || slices.Contains(g.Serials, serial)
}

// CheckAttributes checks a device's reported inventory against the group's
// policy and returns the reasons it fails, sorted; none means it passes.
func (g *EnrollmentGroup) CheckAttributes(d *Device) []string {
	var reasons []string
	if d.Model == "" {
		reasons = append(reasons, "no model reported")
	} else if len(g.Models) > 0 && !slices.Contains(g.Models, d.Model) {
		reasons = append(reasons, fmt.Sprintf("model %q is not allowed in enrollment group %q", d.Model, g.Name))
	}
	if approved, ok := g.Firmware[d.Model]; ok {
		if d.Firmware == "" {
			reasons = append(reasons, "no firmware version reported")
		} else if !slices.Contains(approved, d.Firmware) {
			reasons = append(reasons, fmt.Sprintf("firmware %q is not approved for model %q", d.Firmware, d.Model))
		}
	}
	if len(g.Serials) > 0 && d.Serial != "" && !slices.Contains(g.Serials, d.Serial) && g.Strict {
		reasons = append(reasons, fmt.Sprintf("serial %q is not in the allow-list", d.Serial))
	}
	sort.Strings(reasons)
	return reasons
}
