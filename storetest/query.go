package storetest

import (
	"strings"
	"testing"

	"github.com/steward-iot/steward"
)

// fleet creates the devices the query tests select from, and a twin of the
// first in tenant B that no query of tenant A may find.
func fleet(t *testing.T, s steward.Store) {
	t.Helper()
	setup(t, s)
	mk := func(tenant, id, model, firmware string, state steward.State, online bool, labels map[string]string, attrs map[string]any) steward.Device {
		d := device(tenant, id)
		d.Model, d.Firmware, d.State, d.Presence.Online, d.Labels, d.Attributes = model, firmware, state, online, labels, attrs
		return d
	}
	createDevices(t, s,
		mk(tenantA, "d-q01", "gw-100", "1.9.0", steward.StateActive, true, map[string]string{"site": "paris", "tier": "gold"}, map[string]any{"uptime": 12.5}),
		mk(tenantA, "d-q02", "gw-100", "1.10.0", steward.StateQuarantined, false, map[string]string{"site": "lyon"}, map[string]any{"uptime": 3.0}),
		mk(tenantA, "d-q03", "gw-200", "2.0.0-rc.1", steward.StateActive, true, map[string]string{"site": "paris"}, nil),
		mk(tenantA, "d-q04", "gw-200", "2.0.0", steward.StateMaintenance, false, nil, map[string]any{"uptime": "n/a"}),
		mk(tenantA, "d-q05", "sensor", "", steward.StateRegistered, false, map[string]string{"tier": "silver"}, nil),
		mk(tenantA, "d-q06", "gw-100", "custom-build", steward.StateActive, false, map[string]string{"site": "lab-1"}, nil),
		mk(tenantB, "d-qb1", "gw-100", "1.9.0", steward.StateActive, true, map[string]string{"site": "paris", "tier": "gold"}, map[string]any{"uptime": 12.5}),
	)
}

func testListDevicesQuery(t *testing.T, s steward.Store) {
	c := ctx(t)
	fleet(t, s)
	tests := []struct {
		query string
		want  string // the matching device IDs, space-separated, without "d-"
	}{
		{``, "q01 q02 q03 q04 q05 q06"},
		{`model = "gw-100"`, "q01 q02 q06"},
		{`model = gw-100`, "q01 q02 q06"},
		{`id = "d-q03"`, "q03"},
		// Firmware compares as semantic versions: 1.9 < 1.10, a
		// pre-release before its release, and no version (empty or not a
		// version) is ever ordered with versions.
		{`firmware < "1.10.0"`, "q01"},
		{`firmware <= "1.10"`, "q01 q02"},
		{`firmware >= "1.10.0"`, "q02 q03 q04"},
		{`firmware > "2.0.0-rc.1"`, "q04"},
		{`firmware < "2.0.0"`, "q01 q02 q03"},
		{`firmware = "1.9.0"`, "q01"},
		{`labels.site = "paris"`, "q01 q03"},
		{`labels.site ~ "lab-*"`, "q06"},
		{`labels.site != "paris"`, "q02 q04 q05 q06"},
		{`NOT labels.site = "paris"`, "q02 q04 q05 q06"},
		{`labels.tier = "gold" AND labels.site = "paris"`, "q01"},
		{`online = true`, "q01 q03"},
		{`online = false AND state = active`, "q06"},
		{`state = quarantined`, "q02"},
		{`state != active`, "q02 q04 q05"},
		{`model = "gw-200" OR labels.tier = "silver"`, "q03 q04 q05"},
		{`(model = "gw-100" AND online = false) OR state = maintenance`, "q02 q04 q06"},
		{`attributes.uptime > 10`, "q01"},
		{`attributes.uptime = "n/a"`, "q04"},
		{`model ~ "gw-*" AND NOT (firmware >= "2.0.0-rc.1")`, "q01 q02 q06"},
		{`labels.none = "x"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			var want []string
			for _, id := range strings.Fields(tc.want) {
				want = append(want, "d-"+id)
			}
			list, err := s.ListDevices(c, tenantA, steward.DeviceQuery{Query: tc.query})
			must(t, err)
			eqStrings(t, "ListDevices", ids(list), want)
			n, err := s.CountDevices(c, tenantA, steward.DeviceQuery{Query: tc.query})
			must(t, err)
			if n != len(want) {
				t.Fatalf("CountDevices = %d, want %d", n, len(want))
			}
		})
	}
	// Listed devices are whole.
	list, err := s.ListDevices(c, tenantA, steward.DeviceQuery{Query: `id = "d-q01"`})
	must(t, err)
	got, err := s.GetDevice(c, tenantA, "d-q01")
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("ListDevices = %v", ids(list))
	}
	sameDevice(t, list[0], got)
}

func testListDevicesPagination(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	var all, even []string
	var ds []steward.Device
	for i := range 25 {
		d := device(tenantA, did("p", i))
		d.Labels = map[string]string{"parity": []string{"even", "odd"}[i%2]}
		ds = append(ds, d)
		all = append(all, d.ID)
		if i%2 == 0 {
			even = append(even, d.ID)
		}
	}
	// Inserted out of order: the listing is by ID whatever the insertion order.
	for i, j := 0, len(ds)-1; i < j; i, j = i+1, j-1 {
		ds[i], ds[j] = ds[j], ds[i]
	}
	createDevices(t, s, ds...)

	pages := func(q steward.DeviceQuery) [][]string {
		var out [][]string
		for range 10 {
			list, err := s.ListDevices(c, tenantA, q)
			must(t, err)
			if len(list) == 0 {
				return out
			}
			out = append(out, ids(list))
			q.After = list[len(list)-1].ID
		}
		t.Fatal("pagination does not end")
		return nil
	}
	got := pages(steward.DeviceQuery{Limit: 10})
	if len(got) != 3 || len(got[0]) != 10 || len(got[1]) != 10 || len(got[2]) != 5 {
		t.Fatalf("pages of 10: %v", got)
	}
	eqStrings(t, "all pages", append(append(got[0], got[1]...), got[2]...), all)

	got = pages(steward.DeviceQuery{Query: `labels.parity = "even"`, Limit: 5})
	if len(got) != 3 || len(got[2]) != 3 {
		t.Fatalf("pages of 5 even devices: %v", got)
	}
	eqStrings(t, "even pages", append(append(got[0], got[1]...), got[2]...), even)

	// After need not be an existing ID.
	list, err := s.ListDevices(c, tenantA, steward.DeviceQuery{After: did("p", 22) + "z"})
	must(t, err)
	eqStrings(t, "after a gap", ids(list), all[23:])

	// CountDevices counts every match, whatever After and Limit say.
	n, err := s.CountDevices(c, tenantA, steward.DeviceQuery{Query: `labels.parity = "even"`, After: all[20], Limit: 1})
	must(t, err)
	if n != len(even) {
		t.Fatalf("CountDevices = %d, want %d", n, len(even))
	}
}

func testListDevicesLimits(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	var ds []steward.Device
	for i := range 1001 {
		d := device(tenantA, did("l", i))
		d.FactoryID = ""
		ds = append(ds, d)
	}
	createDevices(t, s, ds...)
	tests := []struct {
		limit, want int
	}{
		{0, 100}, // the default
		{1, 1},
		{1000, 1000},
		{5000, 1000}, // at most 1000
	}
	for _, tc := range tests {
		list, err := s.ListDevices(c, tenantA, steward.DeviceQuery{Limit: tc.limit})
		must(t, err)
		if len(list) != tc.want {
			t.Fatalf("Limit %d lists %d devices, want %d", tc.limit, len(list), tc.want)
		}
	}
	n, err := s.CountDevices(c, tenantA, steward.DeviceQuery{})
	must(t, err)
	if n != 1001 {
		t.Fatalf("CountDevices = %d, want 1001", n)
	}
}

func testListDevicesInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	fleet(t, s)
	tests := []struct {
		name string
		q    steward.DeviceQuery
		msg  string // in the message
	}{
		{"syntax", steward.DeviceQuery{Query: `model = `}, "column"},
		{"unknown field", steward.DeviceQuery{Query: `colour = "red"`}, "colour"},
		{"bad operator", steward.DeviceQuery{Query: `online > true`}, "online"},
		{"unbalanced", steward.DeviceQuery{Query: `(model = "x"`}, "column"},
		{"negative limit", steward.DeviceQuery{Limit: -1}, "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ListDevices(c, tenantA, tc.q)
			wantCode(t, err, steward.CodeInvalid)
			if !strings.Contains(steward.ErrorMessage(err), tc.msg) {
				t.Fatalf("message %q does not mention %q", steward.ErrorMessage(err), tc.msg)
			}
			if tc.q.Query != "" {
				_, err = s.CountDevices(c, tenantA, tc.q)
				wantCode(t, err, steward.CodeInvalid)
			}
		})
	}
}
