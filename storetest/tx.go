package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// writeAll makes one write of each kind through tx, as provisioning does.
func writeAll(t *testing.T, tx steward.Store, id string) error {
	t.Helper()
	c := ctx(t)
	d := device(tenantA, id)
	if err := tx.CreateDevice(c, d); err != nil {
		return err
	}
	// Reads in the transaction see its writes.
	if _, err := tx.GetDevice(c, tenantA, id); err != nil {
		return err
	}
	if err := tx.AddLifecycleEvent(c, steward.LifecycleEvent{TenantID: tenantA, DeviceID: id, From: steward.StateRegistered, To: steward.StateProvisioned, Actor: "device", At: t0}); err != nil {
		return err
	}
	if err := tx.AddCertificate(c, cert(tenantA, id, "serial-"+id, t0)); err != nil {
		return err
	}
	if err := tx.WriteSamples(c, []steward.Sample{{TenantID: tenantA, DeviceID: id, Metric: "cpu", Value: 1, At: t0}}); err != nil {
		return err
	}
	if err := tx.AddSecurityEvent(c, steward.SecurityEvent{TenantID: tenantA, DeviceID: id, Kind: steward.SecACLDenied, At: t0}); err != nil {
		return err
	}
	return tx.CreateSecret(c, "secret-"+id, []byte("v"))
}

// present reports, for each kind of write of writeAll, whether it landed.
func present(t *testing.T, s steward.Store, id string) []bool {
	t.Helper()
	c := ctx(t)
	_, err := s.GetDevice(c, tenantA, id)
	dev := err == nil
	evs, err := s.ListLifecycleEvents(c, tenantA, id)
	must(t, err)
	_, err = s.GetCertificate(c, tenantA, "serial-"+id)
	crt := err == nil
	latest, err := s.LatestSamples(c, tenantA, id)
	must(t, err)
	samples, err := s.ListSamples(c, tenantA, id, "cpu", t0, t0.Add(time.Hour), 0)
	must(t, err)
	secEvs, err := s.ListSecurityEvents(c, tenantA, steward.SecurityEventFilter{DeviceID: id})
	must(t, err)
	_, err = s.GetSecret(c, "secret-"+id)
	sec := err == nil
	return []bool{dev, len(evs) > 0, crt, len(latest) > 0, len(samples) > 0, len(secEvs) > 0, sec}
}

func testInTxCommit(t *testing.T, s steward.Store) {
	setup(t, s)
	must(t, s.InTx(ctx(t), func(tx steward.Store) error { return writeAll(t, tx, "d-tx") }))
	for i, ok := range present(t, s, "d-tx") {
		if !ok {
			t.Fatalf("write %d of a committed transaction is missing", i)
		}
	}
}

func testInTxRollback(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	t.Run("error", func(t *testing.T) {
		err := s.InTx(c, func(tx steward.Store) error {
			if err := writeAll(t, tx, "d-tx"); err != nil {
				return err
			}
			return errTest
		})
		if !errors.Is(err, errTest) {
			t.Fatalf("InTx returned %v, want fn's error", err)
		}
		for i, ok := range present(t, s, "d-tx") {
			if ok {
				t.Fatalf("write %d of a rolled back transaction landed", i)
			}
		}
	})
	t.Run("store error", func(t *testing.T) {
		// A refused write fails the transaction and takes the earlier
		// writes with it; the caller sees the store's error as it was.
		must(t, s.CreateDevice(c, device(tenantA, "d-taken")))
		err := s.InTx(c, func(tx steward.Store) error {
			if err := writeAll(t, tx, "d-tx2"); err != nil {
				return err
			}
			return tx.CreateDevice(c, device(tenantB, "d-taken"))
		})
		wantCode(t, err, steward.CodeConflict)
		for i, ok := range present(t, s, "d-tx2") {
			if ok {
				t.Fatalf("write %d of a failed transaction landed", i)
			}
		}
	})
	t.Run("panic", func(t *testing.T) {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the panic did not go through InTx")
				}
			}()
			_ = s.InTx(c, func(tx steward.Store) error {
				if err := writeAll(t, tx, "d-tx3"); err != nil {
					return err
				}
				panic("storetest: panicking on purpose")
			})
		}()
		for i, ok := range present(t, s, "d-tx3") {
			if ok {
				t.Fatalf("write %d of a panicking transaction landed", i)
			}
		}
		// And the store still works: the transaction did not leak.
		must(t, s.InTx(c, func(tx steward.Store) error { return writeAll(t, tx, "d-tx4") }))
	})
}

func testInTxNested(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	// A nested InTx joins the outer transaction: the outer rollback takes
	// the inner writes too.
	err := s.InTx(c, func(tx steward.Store) error {
		if err := tx.InTx(c, func(inner steward.Store) error { return writeAll(t, inner, "d-in") }); err != nil {
			return err
		}
		if _, err := tx.GetDevice(c, tenantA, "d-in"); err != nil {
			t.Errorf("the outer transaction does not see the inner one's write: %v", err)
		}
		return errTest
	})
	if !errors.Is(err, errTest) {
		t.Fatalf("InTx returned %v, want fn's error", err)
	}
	for i, ok := range present(t, s, "d-in") {
		if ok {
			t.Fatalf("write %d of a nested transaction outlived the outer rollback", i)
		}
	}
	// An inner error rolls everything back as it propagates.
	err = s.InTx(c, func(tx steward.Store) error {
		if err := tx.CreateDevice(c, device(tenantA, "d-out")); err != nil {
			return err
		}
		return tx.InTx(c, func(steward.Store) error { return errTest })
	})
	if !errors.Is(err, errTest) {
		t.Fatalf("InTx returned %v, want the inner error", err)
	}
	_, err = s.GetDevice(c, tenantA, "d-out")
	wantCode(t, err, steward.CodeNotFound)
}

func testTimeRoundTrip(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	zones := []*time.Location{time.UTC, time.FixedZone("east", 14*3600), time.FixedZone("west", -(9*3600 + 30*60))}
	for i, loc := range zones {
		// Nanoseconds that must come back as microseconds, an instant
		// across a date line from UTC, and times before 1970 and far ahead.
		when := []time.Time{
			time.Date(2026, 12, 31, 23, 59, 59, 999999999, loc),
			time.Date(1969, 7, 20, 20, 17, 40, 1000, loc),
			time.Date(2199, 1, 1, 0, 0, 0, 1, loc),
		}[i]
		id := did("t", i)
		d := device(tenantA, id)
		d.CreatedAt, d.UpdatedAt, d.StateChangedAt = when, when, when
		d.Presence.LastSeen = when
		d.WarrantyEnd = &when
		must(t, s.CreateDevice(c, d))
		got, err := s.GetDevice(c, tenantA, id)
		must(t, err)
		for name, v := range map[string]time.Time{
			"created_at": got.CreatedAt, "updated_at": got.UpdatedAt, "state_changed_at": got.StateChangedAt,
			"last_seen": got.Presence.LastSeen, "warranty_end": *got.WarrantyEnd,
		} {
			if v.Location() != time.UTC {
				t.Errorf("%s %v is not in UTC", name, v)
			}
			if !v.Equal(when.Truncate(time.Microsecond)) {
				t.Errorf("%s = %v, want %v", name, v, when.Truncate(time.Microsecond))
			}
			if v.Sub(when).Abs() >= time.Millisecond {
				t.Errorf("%s lost more than a millisecond: %v", name, v.Sub(when))
			}
		}
		must(t, s.WriteSamples(c, []steward.Sample{{TenantID: tenantA, DeviceID: id, Metric: "m", Value: 1, At: when}}))
		ss, err := s.ListSamples(c, tenantA, id, "m", when.Add(-time.Microsecond), when.Add(time.Microsecond), 0)
		must(t, err)
		if len(ss) != 1 || !ss[0].At.Equal(when.Truncate(time.Microsecond)) || ss[0].At.Location() != time.UTC {
			t.Errorf("sample time round trip: %+v, want %v in UTC", ss, when)
		}
	}
}
