package sqlstore

import (
	"context"
	"slices"
	"sync"

	"github.com/steward-iot/steward"
)

// TelemetrySchema is the name under which the store's connections see the
// telemetry database, when the telemetry tables live in one of their own
// (SQLite: ATTACH … AS telemetry; see SetTelemetryWriter). Statements
// name those tables without it: a name the main database does not have
// resolves to the attached one.
const TelemetrySchema = "telemetry"

// telemetryDeviceTables lists, from its catalog, the tables of the
// telemetry database that name a device, when it is a database of its own
// (none otherwise: the main catalog lists them). Reading the catalog, as
// deviceTables does, keeps a table added later from being missed by
// erasure and tenant deletion.
func (s *Store) telemetryDeviceTables(ctx context.Context) ([]deviceTable, error) {
	if !s.splitTelemetry() {
		return nil, nil
	}
	rows, err := s.query(ctx, `SELECT m.name, SUM(p.name = 'tenant_id') > 0
		FROM `+TelemetrySchema+`.sqlite_schema m, pragma_table_info(m.name, '`+TelemetrySchema+`') p
		WHERE m.type = 'table' GROUP BY m.name HAVING SUM(p.name = 'device_id') > 0 ORDER BY m.name`)
	if err != nil {
		return nil, s.fail(err, "list telemetry tables")
	}
	return collect(rows, func(t *deviceTable) []any { return []any{&t.name, &t.tenant} }, s, "list telemetry tables")
}

// deleteTelemetry deletes, through the telemetry writer, the rows of the
// telemetry database's tables that belong to a device (deviceID set) or to
// a whole tenant, and returns how many each table lost. It does nothing
// unless the telemetry tables are a database of their own: otherwise the
// caller's transaction deletes them with the rest. A tenant's rows go in
// chunks of telemetryDeleteDevices devices, each its own statement, so that
// the intake's batches get the writer (and the latest values' cache) in
// between.
func (s *Store) deleteTelemetry(ctx context.Context, tenantID, deviceID string) (map[string]int64, error) {
	tables, err := s.telemetryDeviceTables(ctx)
	if err != nil || len(tables) == 0 {
		return nil, err
	}
	out := map[string]int64{}
	for _, t := range tables {
		q, args := byDevice(t, tenantID, deviceID)
		q = `DELETE FROM ` + quoteIdent(t.name) + q
		if deviceID == "" {
			if !t.tenant {
				continue
			}
			q = `DELETE FROM ` + quoteIdent(t.name) + ` WHERE (tenant_id, device_id) IN
				(SELECT tenant_id, device_id FROM ` + quoteIdent(t.name) + ` WHERE tenant_id = ? LIMIT ?)`
			args = []any{tenantID, telemetryDeleteDevices}
		}
		for {
			n, err := s.deleteTelemetryChunk(ctx, tenantID, deviceID, q, args...)
			out[t.name] += n
			if err != nil {
				return out, s.fail(err, "delete from %s", t.name)
			}
			if deviceID != "" || n == 0 {
				break
			}
		}
	}
	return out, nil
}

// telemetryDeleteDevices is how many devices' rows one statement of a
// tenant's deletion takes from a telemetry table.
const telemetryDeleteDevices = 1000

// deleteTelemetryChunk runs one delete of deleteTelemetry under the latest
// values' cache lock, forgetting what it deletes: no batch may merge into
// cached rows of what is gone.
func (s *Store) deleteTelemetryChunk(ctx context.Context, tenantID, deviceID, q string, args ...any) (int64, error) {
	s.shared.latest.mu.Lock()
	defer s.shared.latest.mu.Unlock()
	s.shared.latest.forget(tenantID, deviceID)
	res, err := s.twdb.ExecContext(ctx, s.q(q), args...)
	if err != nil {
		return 0, err
	}
	return affected(res)
}

// notTelemetry drops the telemetry database's tables from tables, when it
// is a database of its own: the main writer cannot write them.
func (s *Store) notTelemetry(tables []string) []string {
	if !s.splitTelemetry() {
		return tables
	}
	return slices.DeleteFunc(tables, func(t string) bool { return slices.Contains(TelemetryTables, t) })
}

// withTelemetryDeleted deletes a device's or a tenant's rows from the
// telemetry database and runs fn, which deletes the rest of them, in one
// transaction of the main writer; fn gets what was deleted here, per table.
//
// Those deletes cannot join fn's transaction, so they come in two passes:
// one before it (a failure of fn then leaves the device or tenant in place
// for the operation to be tried again), and one inside it, just before its
// commit, for what the intake wrote meanwhile. Inside it, because the
// transaction holds the main writer: the rollup's move, which copies
// samples_recent into samples, cannot run between the second pass and the
// commit, so nothing deleted here is copied back. Readings that arrive
// after the second pass, until the commit (a few milliseconds), are not
// deleted.
func (s *Store) withTelemetryDeleted(ctx context.Context, tenantID, deviceID string, fn func(tx *Store, deleted map[string]int64) error) error {
	deleted, err := s.deleteTelemetry(ctx, tenantID, deviceID)
	if err != nil {
		return err
	}
	if s.shared.deleteHook != nil {
		s.shared.deleteHook(ctx)
	}
	return s.InTx(ctx, func(st steward.Store) error {
		tx := st.(*Store)
		if err := fn(tx, deleted); err != nil {
			return err
		}
		late, err := s.deleteTelemetry(ctx, tenantID, deviceID)
		for table, n := range late {
			if n > 0 {
				s.log.Info("telemetry written during a deletion deleted before its commit", "tenant", tenantID, "device", deviceID, "table", table, "rows", n)
			}
		}
		return err
	})
}

// snapGate orders the readers' snapshots against the rollup's move, where
// the telemetry tables have a database of their own. A statement takes its
// snapshot of steward.db, then of the telemetry database (SQLite opens them
// in that order when it starts); were the move to commit in steward.db and
// then delete from the telemetry database between the two, the statement
// would see the moved readings in neither table. A reader is inside the
// gate while its statement starts (the driver runs the first step in
// QueryContext); between its commit and its delete the move waits for
// every reader that entered before, but lets new ones in: a reader that
// waits for a connection held by another caller's rows cannot make it
// wait for ever.
type snapGate struct {
	mu     sync.Mutex
	cond   sync.Cond
	epoch  uint64
	active map[uint64]int // readers inside, by the epoch they entered in
}

// enter lets a reader in and returns what exit needs.
func (g *snapGate) enter() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active == nil {
		g.active = map[uint64]int{}
	}
	g.active[g.epoch]++
	return g.epoch
}

// exit lets out a reader that entered in epoch.
func (g *snapGate) exit(epoch uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active[epoch]--; g.active[epoch] == 0 {
		delete(g.active, epoch)
		if g.cond.L != nil {
			g.cond.Broadcast()
		}
	}
}

// wait returns once every reader that entered before it has left.
func (g *snapGate) wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
	before := g.epoch
	g.epoch++
	for {
		waiting := false
		for e := range g.active {
			if e <= before {
				waiting = true
				break
			}
		}
		if !waiting {
			return
		}
		g.cond.Wait()
	}
}
