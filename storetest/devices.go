package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func testDeviceRoundTrip(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	full := device(tenantA, "d-full")
	must(t, s.CreateDevice(c, full))
	got, err := s.GetDevice(c, tenantA, "d-full")
	must(t, err)
	sameDevice(t, got, full)

	byFactory, err := s.DeviceByFactoryID(c, tenantA, "fac-d-full")
	must(t, err)
	sameDevice(t, byFactory, full)
	_, err = s.DeviceByFactoryID(c, tenantA, "fac-none")
	wantCode(t, err, steward.CodeNotFound)

	// A bare device: nil maps and pointers, zero presence times, no
	// factory identity.
	bare := steward.Device{ID: "d-bare", TenantID: tenantA, State: steward.StateRegistered, CreatedAt: t0, UpdatedAt: t0, StateChangedAt: t0}
	must(t, s.CreateDevice(c, bare))
	got, err = s.GetDevice(c, tenantA, "d-bare")
	must(t, err)
	sameDevice(t, got, bare)
	if got.Labels == nil || got.Attributes == nil {
		t.Fatalf("bare device has nil maps: %+v", got)
	}
	if got.WarrantyEnd != nil || got.Location.Latitude != nil || !got.Presence.LastSeen.IsZero() {
		t.Fatalf("bare device gained values: %s", dump(got))
	}
	_, err = s.DeviceByFactoryID(c, tenantA, "")
	wantCode(t, err, steward.CodeNotFound)

	_, err = s.GetDevice(c, tenantA, "d-none")
	wantCode(t, err, steward.CodeNotFound)
}

func testDeviceInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	tests := []struct {
		name   string
		change func(d *steward.Device)
		code   steward.Code
	}{
		{"empty ID", func(d *steward.Device) { d.ID = "" }, steward.CodeInvalid},
		{"ID with a slash", func(d *steward.Device) { d.ID = "d/1" }, steward.CodeInvalid},
		{"ID with a wildcard", func(d *steward.Device) { d.ID = "d-+" }, steward.CodeInvalid},
		{"no tenant", func(d *steward.Device) { d.TenantID = "" }, steward.CodeInvalid},
		{"unknown state", func(d *steward.Device) { d.State = "lost" }, steward.CodeInvalid},
		{"empty label key", func(d *steward.Device) { d.Labels = map[string]string{"": "x"} }, steward.CodeInvalid},
		{"negative version", func(d *steward.Device) { d.Version = -1 }, steward.CodeInvalid},
		{"unknown tenant", func(d *steward.Device) { d.TenantID = "no-such-tenant" }, steward.CodeNotFound},
		{"attribute JSON cannot encode", func(d *steward.Device) { d.Attributes = map[string]any{"f": func() {}} }, steward.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := device(tenantA, "d-bad")
			tc.change(&d)
			wantCode(t, s.CreateDevice(c, d), tc.code)
		})
	}
	for _, tenant := range []string{tenantA, tenantB, "no-such-tenant"} {
		n, err := s.CountDevices(c, tenant, steward.DeviceQuery{})
		must(t, err)
		if n != 0 {
			t.Fatalf("refused devices were written: tenant %s has %d", tenant, n)
		}
	}
}

func testDeviceConflicts(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))

	// The device ID is unique across tenants: it is the certificate CN and
	// the MQTT client ID.
	other := device(tenantB, "d-1")
	other.FactoryID = "fac-other"
	wantCode(t, s.CreateDevice(c, other), steward.CodeConflict)

	// A factory identity is bound to one device of the tenant.
	clone := device(tenantA, "d-2")
	clone.FactoryID = "fac-d-1"
	err := s.CreateDevice(c, clone)
	wantCode(t, err, steward.CodeConflict)

	// Nothing was written by the refused creates.
	_, err = s.GetDevice(c, tenantB, "d-1")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.GetDevice(c, tenantA, "d-2")
	wantCode(t, err, steward.CodeNotFound)

	// Another tenant may hold the same factory identity, and devices
	// without one never clash.
	elsewhere := device(tenantB, "d-3")
	elsewhere.FactoryID = "fac-d-1"
	must(t, s.CreateDevice(c, elsewhere))
	for _, id := range []string{"d-4", "d-5"} {
		d := device(tenantA, id)
		d.FactoryID = ""
		must(t, s.CreateDevice(c, d))
	}

	// An update may not steal another device's factory identity either.
	d5, err := s.GetDevice(c, tenantA, "d-5")
	must(t, err)
	d5.FactoryID = "fac-d-1"
	_, err = s.UpdateDevice(c, d5)
	wantCode(t, err, steward.CodeConflict)
	after, err := s.GetDevice(c, tenantA, "d-5")
	must(t, err)
	if after.FactoryID != "" || after.Version != d5.Version {
		t.Fatalf("refused update was written: %+v", after)
	}
}

func testDeviceIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	a := device(tenantA, "d-a")
	must(t, s.CreateDevice(c, a))

	_, err := s.GetDevice(c, tenantB, "d-a")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.DeviceByFactoryID(c, tenantB, "fac-d-a")
	wantCode(t, err, steward.CodeNotFound)

	stolen := a
	stolen.TenantID = tenantB
	stolen.Owner = "mallory"
	_, err = s.UpdateDevice(c, stolen)
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.UpdatePresence(c, tenantB, "d-a", steward.Presence{Online: false, RemoteAddr: "evil"}), steward.CodeNotFound)

	list, err := s.ListDevices(c, tenantB, steward.DeviceQuery{})
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists tenant A's devices: %v", ids(list))
	}
	for _, q := range []string{"", `model = "gw-100"`, `id = "d-a"`, `labels.site = "paris"`, "online = true"} {
		n, err := s.CountDevices(c, tenantB, steward.DeviceQuery{Query: q})
		must(t, err)
		list, err := s.ListDevices(c, tenantB, steward.DeviceQuery{Query: q})
		must(t, err)
		if n != 0 || len(list) != 0 {
			t.Fatalf("tenant B's query %q finds tenant A's device: count %d, list %v", q, n, ids(list))
		}
	}

	got, err := s.GetDevice(c, tenantA, "d-a")
	must(t, err)
	sameDevice(t, got, a)
}

func testUpdateDevice(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	d := device(tenantA, "d-1")
	must(t, s.CreateDevice(c, d))
	d, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	v := d.Version

	// Every mutable field changes; the presence fields are UpdatePresence's.
	upd := d
	upd.EnrollmentGroupID = "g-other"
	upd.FactoryID = "fac-new"
	upd.FactoryKeyID = "key-new"
	upd.Model = "gw-200"
	upd.Serial = "SN-new"
	upd.Hardware = "revC"
	upd.Firmware = "1.10.0"
	upd.Location = steward.Location{Site: "lyon"}
	upd.Owner = "alice"
	upd.Labels = map[string]string{"site": "lyon"}
	upd.Attributes = map[string]any{"firmware": "1.10.0"}
	upd.WarrantyEnd = nil
	if _, err := steward.Transition(&upd, steward.StateActive, "validated", "system", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	upd.UpdatedAt = at(time.Hour)
	upd.Presence = steward.Presence{Online: false, RemoteAddr: "ignored"}
	saved, err := s.UpdateDevice(c, upd)
	must(t, err)
	if saved.Version != v+1 {
		t.Fatalf("version %d after update of version %d", saved.Version, v)
	}
	want := upd
	want.Version = v + 1
	want.Presence = d.Presence // untouched
	sameDevice(t, saved, want)
	got, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	sameDevice(t, got, want)

	// The firmware sort key follows the firmware.
	n, err := s.CountDevices(c, tenantA, steward.DeviceQuery{Query: `firmware > "1.9.0"`})
	must(t, err)
	if n != 1 {
		t.Fatalf(`after the update firmware > "1.9.0" counts %d, want 1`, n)
	}

	t.Run("stale version", func(t *testing.T) {
		stale := upd // still carries version v
		stale.Owner = "bob"
		_, err := s.UpdateDevice(c, stale)
		wantCode(t, err, steward.CodeConflict)
		got, err := s.GetDevice(c, tenantA, "d-1")
		must(t, err)
		if got.Owner != "alice" || got.Version != v+1 {
			t.Fatalf("stale update was written: owner %q version %d", got.Owner, got.Version)
		}
	})
	t.Run("missing", func(t *testing.T) {
		missing := device(tenantA, "d-none")
		_, err := s.UpdateDevice(c, missing)
		wantCode(t, err, steward.CodeNotFound)
	})
	t.Run("invalid", func(t *testing.T) {
		bad := got
		bad.State = "lost"
		_, err := s.UpdateDevice(c, bad)
		wantCode(t, err, steward.CodeInvalid)
		after, err := s.GetDevice(c, tenantA, "d-1")
		must(t, err)
		if after.State != steward.StateActive || after.Version != got.Version {
			t.Fatalf("invalid update was written: %+v", after)
		}
	})
}

func testUpdateDeviceConcurrent(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	d, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)

	// Writers that all read the same version: exactly one wins.
	const writers = 4
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			mine := d
			mine.Owner = did("owner", i)
			_, errs[i] = s.UpdateDevice(c, mine)
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("writers %d and %d both updated version %d", won, i, d.Version)
		case err == nil:
			won = i
		default:
			wantCode(t, err, steward.CodeConflict)
		}
	}
	if won < 0 {
		t.Fatal("no writer won")
	}
	got, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	if got.Owner != did("owner", won) || got.Version != d.Version+1 {
		t.Fatalf("stored owner %q version %d, want the winner's %q at version %d", got.Owner, got.Version, did("owner", won), d.Version+1)
	}
}

func testUpdatePresence(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	d := device(tenantA, "d-1")
	d.Presence = steward.Presence{}
	must(t, s.CreateDevice(c, d))
	before, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)

	p := steward.Presence{Online: true, ConnectedSince: at(time.Minute), LastSeen: at(2 * time.Minute), Reconnects: 7, RemoteAddr: "[2001:db8::1]:4242"}
	must(t, s.UpdatePresence(c, tenantA, "d-1", p))
	got, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	want := before
	want.Presence = p
	sameDevice(t, got, want) // nothing else changed, the version neither

	// An operator's update based on the version read before the presence
	// change still goes through: presence never conflicts.
	before.Owner = "carol"
	_, err = s.UpdateDevice(c, before)
	must(t, err)

	n, err := s.CountDevices(c, tenantA, steward.DeviceQuery{Query: "online = true"})
	must(t, err)
	if n != 1 {
		t.Fatalf("online devices: %d, want 1", n)
	}
	must(t, s.UpdatePresence(c, tenantA, "d-1", steward.Presence{Online: false, LastSeen: at(time.Hour), Reconnects: 7}))
	got, err = s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	if got.Presence.Online || !got.Presence.ConnectedSince.IsZero() || !got.Presence.LastSeen.Equal(at(time.Hour).Truncate(time.Microsecond)) {
		t.Fatalf("presence after going offline: %+v", got.Presence)
	}
	wantCode(t, s.UpdatePresence(c, tenantA, "d-none", p), steward.CodeNotFound)
}

func testTouchDevices(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	for _, d := range []steward.Device{device(tenantA, "d-1"), device(tenantA, "d-2"), device(tenantB, "d-b")} {
		d.Presence = steward.Presence{LastSeen: at(time.Hour)}
		must(t, s.CreateDevice(c, d))
	}
	before, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	must(t, s.TouchDevices(c, []steward.DeviceSeen{
		{TenantID: tenantA, DeviceID: "d-1", At: at(2 * time.Hour)},    // forward
		{TenantID: tenantA, DeviceID: "d-2", At: at(time.Minute)},      // back: ignored
		{TenantID: tenantA, DeviceID: "d-b", At: at(3 * time.Hour)},    // another tenant's ID: skipped
		{TenantID: tenantA, DeviceID: "d-none", At: at(3 * time.Hour)}, // unknown: skipped
	}))
	seen := func(tenant, id string) time.Time {
		d, err := s.GetDevice(c, tenant, id)
		must(t, err)
		return d.Presence.LastSeen
	}
	if got := seen(tenantA, "d-1"); !got.Equal(at(2 * time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("d-1 last seen %v, want moved forward", got)
	}
	if got := seen(tenantA, "d-2"); !got.Equal(at(time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("d-2 last seen %v, want unchanged", got)
	}
	if got := seen(tenantB, "d-b"); !got.Equal(at(time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("another tenant's device touched: %v", got)
	}
	after, err := s.GetDevice(c, tenantA, "d-1")
	must(t, err)
	if after.Version != before.Version {
		t.Error("touching a device changed its version")
	}
	wantCode(t, s.TouchDevices(c, []steward.DeviceSeen{{TenantID: tenantA, DeviceID: "d-1"}}), steward.CodeInvalid)
}
