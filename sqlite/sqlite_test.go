package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlstore"
	"github.com/steward-iot/steward/storetest"
)

// open opens a store on a new file in the test's temporary directory.
func open(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) steward.Store { return open(t) })
}

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, func(t *testing.T) func() *sql.DB {
		path := filepath.Join(t.TempDir(), "steward.db")
		return func() *sql.DB {
			db, err := openWriter(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			return db
		}
	}, Dialect(), Migrations())
}

func TestOpenAgain(t *testing.T) {
	t.Parallel()
	// A path that needs escaping in a URI.
	path := filepath.Join(t.TempDir(), "a dir?#%", "steward.db")
	if _, err := Open(t.Context(), path, nil); err == nil {
		t.Fatal("Open created a database in a directory that does not exist")
	}
	path = filepath.Join(t.TempDir(), "steward ?#%.db")
	s, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(t.Context(), steward.Tenant{ID: "t", Name: "T", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening migrates nothing and finds the data (in that very file).
	s, err = Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetTenant(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := s.DB().QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	for pragma, want := range map[string]int{"synchronous": 2, "foreign_keys": 1} {
		var got int
		if err := s.DB().QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Fatalf("%s = %d, %v; want %d", pragma, got, err, want)
		}
	}
}

// BenchmarkWriteSamples measures the telemetry hot path (see
// storetest.BenchmarkWriteSamples), committed with synchronous=FULL.
func BenchmarkWriteSamples(b *testing.B) {
	storetest.BenchmarkWriteSamples(b, func(b *testing.B) steward.Store { return open(b) })
}

// BenchmarkDeviceByFactoryID looks a device up by its factory identity, as
// every EST enrollment does first, in SQLite stores of growing fleets. A
// lookup that uses the (tenant_id, factory_id) index costs the same at
// every size.
func BenchmarkDeviceByFactoryID(b *testing.B) {
	for _, devices := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			ctx := context.Background()
			st, err := Open(ctx, filepath.Join(b.TempDir(), "s.db"), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			now := time.Now().UTC()
			if err := st.CreateTenant(ctx, steward.Tenant{ID: "t1", Name: "T1", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			factoryID := func(i int) string {
				h := sha256.Sum256(fmt.Appendf(nil, "factory %d", i))
				return hex.EncodeToString(h[:])
			}
			err = st.InTx(ctx, func(tx steward.Store) error {
				for i := range devices {
					d := steward.Device{
						ID: fmt.Sprintf("d-%020x", i+1), TenantID: "t1", FactoryID: factoryID(i), Serial: fmt.Sprintf("SN-%06d", i),
						Labels: map[string]string{}, Attributes: map[string]any{},
						State: steward.StateProvisioned, StateChangedAt: now, CreatedAt: now, UpdatedAt: now,
					}
					if err := tx.CreateDevice(ctx, d); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				d, err := st.DeviceByFactoryID(ctx, "t1", factoryID(i%devices))
				if err != nil || d.Serial != fmt.Sprintf("SN-%06d", i%devices) {
					b.Fatalf("lookup %d: %+v %v", i, d, err)
				}
				i++
			}
		})
	}
}

// BenchmarkFleetAggregates measures the query of fleet analytics (see
// storetest.BenchmarkFleetAggregates).
func BenchmarkFleetAggregates(b *testing.B) {
	storetest.BenchmarkFleetAggregates(b, func(b *testing.B) steward.Store { return open(b) })
}

// BenchmarkRollupSamples measures the rollup job's transaction (see
// storetest.BenchmarkRollupSamples).
func BenchmarkRollupSamples(b *testing.B) {
	storetest.BenchmarkRollupSamples(b, func(b *testing.B) steward.Store { return open(b) })
}
