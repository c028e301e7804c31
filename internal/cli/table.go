package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/steward-iot/steward"
)

// table writes aligned columns. Empty cells show "-" so that columns stay
// readable (and splittable with awk).
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cell makes a value safe for one table cell: no tabs or line breaks (which
// would break the columns), "-" for nothing.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
}

// when formats a time for tables: UTC, to the second; "" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func joinOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// labelText shows labels as k=v,… sorted by key.
func labelText(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

// kv writes a vertical FIELD  VALUE listing.
type kv struct{ tw *tabwriter.Writer }

func newKV(w io.Writer) *kv { return &kv{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)} }

func (k *kv) add(field, value string) { fmt.Fprintf(k.tw, "%s:\t%s\n", field, cell(value)) }

func (k *kv) flush() error { return k.tw.Flush() }

func groupTable(w io.Writer, g steward.EnrollmentGroup) error {
	k := newKV(w)
	k.add("ID", g.ID)
	k.add("Name", g.Name)
	k.add("Tenant", g.TenantID)
	k.add("CA fingerprint", g.CAFingerprint)
	k.add("Models", joinOr(g.Models, "any"))
	var fw []string
	for _, m := range slices.Sorted(maps.Keys(g.Firmware)) {
		fw = append(fw, m+"="+strings.Join(g.Firmware[m], ","))
	}
	if len(fw) == 0 {
		fw = []string{"any"}
	}
	k.add("Firmware", strings.Join(fw, "; "))
	k.add("Labels", labelText(g.Labels))
	k.add("Serials", fmt.Sprint(len(g.Serials)))
	k.add("Strict", fmt.Sprint(g.Strict))
	k.add("Created", when(g.CreatedAt))
	return k.flush()
}

func deviceFields(k *kv, d steward.Device) {
	k.add("ID", d.ID)
	k.add("Tenant", d.TenantID)
	k.add("State", string(d.State))
	if d.StateReason != "" {
		k.add("State reason", d.StateReason)
	}
	changed := when(d.StateChangedAt)
	if d.StateActor != "" {
		changed += " by " + d.StateActor
	}
	k.add("State changed", changed)
	k.add("Enrollment group", d.EnrollmentGroupID)
	k.add("Model", d.Model)
	k.add("Serial", d.Serial)
	k.add("Hardware", d.Hardware)
	k.add("Firmware", d.Firmware)
	k.add("Owner", d.Owner)
	k.add("Site", d.Location.Site)
	if d.Location.Latitude != nil && d.Location.Longitude != nil {
		k.add("Coordinates", fmt.Sprintf("%g, %g", *d.Location.Latitude, *d.Location.Longitude))
	}
	k.add("Labels", labelText(d.Labels))
	if d.WarrantyEnd != nil {
		k.add("Warranty end", d.WarrantyEnd.UTC().Format(time.DateOnly))
	}
	k.add("Online", yesNo(d.Presence.Online))
	k.add("Last seen", when(d.Presence.LastSeen))
	k.add("Version", fmt.Sprint(d.Version))
}

func deviceTable(w io.Writer, d steward.Device) error {
	k := newKV(w)
	deviceFields(k, d)
	return k.flush()
}

func deviceDetailTable(w io.Writer, d steward.DeviceDetail) error {
	k := newKV(w)
	deviceFields(k, d.Device)
	if err := k.flush(); err != nil {
		return err
	}
	if len(d.Certificates) > 0 {
		fmt.Fprintln(w, "\nCertificates:")
		t := newTable(w, "SERIAL", "NOT BEFORE", "NOT AFTER", "REVOKED")
		for _, c := range d.Certificates {
			revoked := ""
			if c.RevokedAt != nil {
				revoked = when(*c.RevokedAt)
			}
			t.row(c.Serial, when(c.NotBefore), when(c.NotAfter), revoked)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(d.History) > 0 {
		fmt.Fprintln(w, "\nHistory:")
		t := newTable(w, "AT", "FROM", "TO", "ACTOR", "REASON")
		for _, h := range d.History {
			t.row(when(h.At), string(h.From), string(h.To), h.Actor, h.Reason)
		}
		return t.flush()
	}
	return nil
}

func commandTable(w io.Writer, r steward.CommandResult) error {
	k := newKV(w)
	k.add("Command ID", r.ID)
	k.add("Status", r.Status)
	if len(r.Result) > 0 {
		b, err := json.Marshal(r.Result)
		if err != nil {
			return err
		}
		k.add("Result", string(b))
	}
	if r.Error != "" {
		k.add("Error", r.Error)
	}
	return k.flush()
}
