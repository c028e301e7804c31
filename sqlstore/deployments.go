package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

const deploymentCols = `id, tenant_id, name, description, spec, state, state_reason, evidence, phase, phase_done_at,
	rollback_of, created_by, approved_by, approval_id, created_at, updated_at, started_at, finished_at, failed_base, finished_base, tokens, tokens_at, version`

func scanDeployment(d *steward.Deployment) []any {
	return []any{&d.ID, &d.TenantID, &d.Name, &d.Description, jsonCol{&d.DeploymentSpec}, &d.State, &d.StateReason,
		jsonCol{&d.Evidence}, &d.Phase, timeCol{&d.PhaseDoneAt}, &d.RollbackOf, &d.CreatedBy, &d.ApprovedBy,
		&d.ApprovalID, timeCol{&d.CreatedAt}, timeCol{&d.UpdatedAt}, timeCol{&d.StartedAt}, timeCol{&d.FinishedAt},
		&d.FailedBase, &d.FinishedBase, &d.Tokens, timeCol{&d.TokensAt}, &d.Version}
}

// CreateDeployment implements steward.Store.
func (s *Store) CreateDeployment(ctx context.Context, d steward.Deployment) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.State == "" {
		return invalid("a deployment needs its state")
	}
	spec, err := jsonText(d.DeploymentSpec, "{}")
	if err != nil {
		return invalid("deployment spec: %v", err)
	}
	ev, err := evidenceText(d.Evidence)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO deployments (`+deploymentCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
		d.ID, d.TenantID, d.Name, d.Description, spec, string(d.State), d.StateReason, ev, d.Phase, nullTS(d.PhaseDoneAt),
		d.RollbackOf, d.CreatedBy, d.ApprovedBy, d.ApprovalID, ts(d.CreatedAt), ts(d.UpdatedAt), nullTS(d.StartedAt),
		nullTS(d.FinishedAt), d.FailedBase, d.FinishedBase, d.Tokens, nullTS(d.TokensAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", d.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "deployment %s already exists", d.ID)
	}
	return s.fail(err, "create deployment %s", d.ID)
}

func evidenceText(e *steward.GateEvidence) (any, error) {
	if e == nil {
		return nil, nil
	}
	t, err := jsonText(e, "{}")
	if err != nil {
		return nil, invalid("gate evidence: %v", err)
	}
	return t, nil
}

// GetDeployment implements steward.Store.
func (s *Store) GetDeployment(ctx context.Context, tenantID, id string) (steward.Deployment, error) {
	var d steward.Deployment
	err := s.queryRow(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(scanDeployment(&d)...)
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("deployment %s not found", id)
	}
	return d, s.fail(err, "get deployment %s", id)
}

// ListDeployments implements steward.Store.
func (s *Store) ListDeployments(ctx context.Context, tenantID string, f steward.DeploymentFilter) ([]steward.Deployment, error) {
	if f.State != "" && !f.State.Valid() {
		return nil, invalid("deployment state %q is unknown", f.State)
	}
	switch {
	case f.Limit < 0 || f.Limit > 1000:
		return nil, invalid("limit %d is not within 1 to 1000", f.Limit)
	case f.Limit == 0:
		f.Limit = 100
	}
	q := `SELECT ` + deploymentCols + ` FROM deployments WHERE tenant_id = ?`
	args := []any{tenantID}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, string(f.State))
	}
	rows, err := s.query(ctx, q+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, f.Limit)...)
	if err != nil {
		return nil, s.fail(err, "list deployments")
	}
	return collect(rows, scanDeployment, s, "list deployments")
}

// UpdateDeployment implements steward.Store. The spec, creator and
// creation time never change.
func (s *Store) UpdateDeployment(ctx context.Context, d steward.Deployment) (steward.Deployment, error) {
	if !d.State.Valid() {
		return d, invalid("deployment state %q is unknown", d.State)
	}
	ev, err := evidenceText(d.Evidence)
	if err != nil {
		return d, err
	}
	res, err := s.exec(ctx, `UPDATE deployments SET state = ?, state_reason = ?, evidence = ?, phase = ?, phase_done_at = ?,
		approved_by = ?, approval_id = ?, updated_at = ?, started_at = ?, finished_at = ?, failed_base = ?, finished_base = ?,
		tokens = ?, tokens_at = ?,
		version = version + 1
		WHERE tenant_id = ? AND id = ? AND version = ?`,
		string(d.State), d.StateReason, ev, d.Phase, nullTS(d.PhaseDoneAt), d.ApprovedBy, d.ApprovalID, ts(d.UpdatedAt),
		nullTS(d.StartedAt), nullTS(d.FinishedAt), d.FailedBase, d.FinishedBase, d.Tokens, nullTS(d.TokensAt), d.TenantID, d.ID, d.Version)
	if err != nil {
		return d, s.fail(err, "update deployment %s", d.ID)
	}
	n, err := affected(res)
	if err != nil {
		return d, s.fail(err, "update deployment %s", d.ID)
	}
	if n == 0 {
		if _, gerr := s.GetDeployment(ctx, d.TenantID, d.ID); gerr != nil {
			return d, gerr
		}
		return d, steward.Errorf(steward.CodeConflict, "deployment %s was changed concurrently (version %d is stale)", d.ID, d.Version)
	}
	return s.GetDeployment(ctx, d.TenantID, d.ID)
}

// ClaimDeployments implements steward.Store, like ClaimDeliveries: one
// UPDATE picks and leases the rows, the outer conditions checked again on
// the row it updates.
func (s *Store) ClaimDeployments(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]steward.Deployment, error) {
	switch {
	case owner == "":
		return nil, invalid("claim deployments: an owner is required")
	case lease <= 0:
		return nil, invalid("claim deployments: the lease must be positive")
	case limit < 1 || limit > 1000:
		return nil, invalid("claim deployments: limit %d is not within 1 to 1000", limit)
	}
	now = ts(now)
	rows, err := s.wquery(ctx, `UPDATE deployments SET lease_owner = ?, lease_until = ?
		WHERE state IN ('scheduled', 'running') AND (lease_until <= ? OR lease_owner = ?) AND id IN (
			SELECT id FROM deployments WHERE state IN ('scheduled', 'running') AND (lease_until <= ? OR lease_owner = ?)
			ORDER BY lease_until, id LIMIT ?`+s.d.SkipLocked+`)
		RETURNING `+deploymentCols,
		owner, ts(now.Add(lease)), now, owner, now, owner, limit)
	if err != nil {
		return nil, s.fail(err, "claim deployments")
	}
	return collect(rows, scanDeployment, s, "claim deployments")
}

const deploymentDeviceCols = `tenant_id, deployment_id, device_id, phase, window_idx, state, reason, transient, attempt,
	progress, from_version, to_version, not_before, deadline, updated_at`

const deploymentDeviceNCols = 15

func scanDeploymentDevice(r *steward.DeploymentDevice) []any {
	return []any{&r.TenantID, &r.DeploymentID, &r.DeviceID, &r.Phase, &r.Window, &r.State, &r.Reason, &r.Transient,
		&r.Attempt, &r.Progress, &r.FromVersion, &r.ToVersion, zeroTimeCol{&r.NotBefore}, zeroTimeCol{&r.Deadline},
		timeCol{&r.UpdatedAt}}
}

// noTime is what stands for "no time" in the NOT NULL not_before and
// deadline columns: the Unix epoch, which sorts before any real time.
var noTime = time.Unix(0, 0).UTC()

func orNoTime(t time.Time) time.Time {
	if t.IsZero() {
		return noTime
	}
	return ts(t)
}

// zeroTimeCol scans a not_before or deadline column: the epoch is the
// zero time.
type zeroTimeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c zeroTimeCol) Scan(src any) error {
	if err := timeCol(c).Scan(src); err != nil {
		return err
	}
	if c.t.Equal(noTime) {
		*c.t = time.Time{}
	}
	return nil
}

// AddDeploymentDevices implements steward.Store: multi-row INSERTs of as
// many rows as the dialect's parameter limit allows (at most 1000), in one
// transaction.
func (s *Store) AddDeploymentDevices(ctx context.Context, rows []steward.DeploymentDevice) (int, error) {
	for i, r := range rows {
		if err := required("tenant", r.TenantID, "deployment", r.DeploymentID, "device", r.DeviceID); err != nil {
			return 0, invalid("deployment device %d: %s", i, err.Error())
		}
		if !r.State.Valid() {
			return 0, invalid("deployment device %d: state %q is unknown", i, r.State)
		}
		if r.UpdatedAt.IsZero() {
			return 0, invalid("deployment device %d: updated_at is required", i)
		}
	}
	added := 0
	if s.tx == nil {
		for _, n := range updateSizes {
			if err := s.prepare(ctx, addDevicesSQL(n)); err != nil {
				return 0, s.fail(err, "add deployment devices: prepare")
			}
		}
	}
	err := s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		for len(rows) > 0 {
			size := chunkSize(len(rows))
			batch := rows[:size]
			rows = rows[size:]
			args := make([]any, 0, len(batch)*deploymentDeviceNCols)
			for _, r := range batch {
				args = append(args, r.TenantID, r.DeploymentID, r.DeviceID, r.Phase, r.Window, string(r.State), r.Reason,
					r.Transient, r.Attempt, r.Progress, r.FromVersion, r.ToVersion, orNoTime(r.NotBefore),
					orNoTime(r.Deadline), ts(r.UpdatedAt))
			}
			res, err := t.execIn(ctx, t.tx, addDevicesSQL(size), args...)
			if err != nil {
				if s.d.IsForeignKeyViolation(err) {
					return steward.WrapError(steward.CodeNotFound, err, "deployment %s not found", batch[0].DeploymentID)
				}
				return t.fail(err, "add deployment devices")
			}
			n, err := affected(res)
			if err != nil {
				return t.fail(err, "add deployment devices")
			}
			added += int(n)
		}
		return nil
	})
	return added, err
}

// GetDeploymentDevice implements steward.Store.
func (s *Store) GetDeploymentDevice(ctx context.Context, tenantID, deploymentID, deviceID string) (steward.DeploymentDevice, error) {
	var r steward.DeploymentDevice
	err := s.queryRow(ctx, `SELECT `+deploymentDeviceCols+` FROM deployment_devices
		WHERE tenant_id = ? AND deployment_id = ? AND device_id = ?`, tenantID, deploymentID, deviceID).
		Scan(scanDeploymentDevice(&r)...)
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound("device %s is not in deployment %s", deviceID, deploymentID)
	}
	return r, s.fail(err, "get deployment device %s", deviceID)
}

// ListDeviceDeployments implements steward.Store: the deployments of the
// tenant in those states, each probed by the primary key (deployment_id,
// device_id), so no index by device is needed.
func (s *Store) ListDeviceDeployments(ctx context.Context, tenantID, deviceID string, states []steward.DeploymentState) ([]steward.DeploymentDevice, error) {
	q := `SELECT ` + deploymentDeviceCols + ` FROM deployment_devices WHERE tenant_id = ? AND device_id = ?
		AND deployment_id IN (SELECT id FROM deployments WHERE tenant_id = ?`
	args := []any{tenantID, deviceID, tenantID}
	if len(states) > 0 {
		q += ` AND state IN (?` + strings.Repeat(", ?", len(states)-1) + `)`
		for _, st := range states {
			if !st.Valid() {
				return nil, invalid("deployment state %q is unknown", st)
			}
			args = append(args, string(st))
		}
	}
	rows, err := s.query(ctx, q+`) ORDER BY deployment_id`, args...)
	if err != nil {
		return nil, s.fail(err, "list deployments of device %s", deviceID)
	}
	return collect(rows, scanDeploymentDevice, s, "list deployments of device")
}

// ListDeploymentDevices implements steward.Store.
func (s *Store) ListDeploymentDevices(ctx context.Context, tenantID, deploymentID string, f steward.DeploymentDeviceFilter) ([]steward.DeploymentDevice, error) {
	switch {
	case f.Limit < 0 || f.Limit > 10000:
		return nil, invalid("limit %d is not within 1 to 10000", f.Limit)
	case f.Limit == 0:
		f.Limit = 100
	}
	q := `SELECT ` + deploymentDeviceCols + ` FROM deployment_devices WHERE tenant_id = ? AND deployment_id = ?`
	args := []any{tenantID, deploymentID}
	if f.Phase >= 0 {
		q += ` AND phase = ?`
		args = append(args, f.Phase)
	}
	if len(f.States) > 0 {
		q += ` AND state IN (?` + strings.Repeat(", ?", len(f.States)-1) + `)`
		for _, st := range f.States {
			if !st.Valid() {
				return nil, invalid("device state %q is unknown", st)
			}
			args = append(args, string(st))
		}
	}
	if !f.Due.IsZero() {
		q += ` AND not_before <= ?`
		args = append(args, ts(f.Due))
	}
	if !f.Expired.IsZero() {
		q += ` AND deadline < ? AND deadline > ?`
		args = append(args, ts(f.Expired), noTime)
	}
	if f.TransientOnly {
		q += ` AND transient = ?`
		args = append(args, true)
	}
	if f.After != "" {
		q += ` AND device_id > ?`
		args = append(args, f.After)
	}
	rows, err := s.query(ctx, q+` ORDER BY device_id LIMIT ?`, append(args, f.Limit)...)
	if err != nil {
		return nil, s.fail(err, "list deployment devices")
	}
	return collect(rows, scanDeploymentDevice, s, "list deployment devices")
}

// CountDeploymentDevices implements steward.Store.
func (s *Store) CountDeploymentDevices(ctx context.Context, tenantID, deploymentID string) ([]steward.DeploymentCount, error) {
	rows, err := s.query(ctx, `SELECT phase, state, COUNT(*) FROM deployment_devices
		WHERE tenant_id = ? AND deployment_id = ? GROUP BY phase, state ORDER BY phase, state`, tenantID, deploymentID)
	if err != nil {
		return nil, s.fail(err, "count deployment devices")
	}
	return collect(rows, func(c *steward.DeploymentCount) []any { return []any{&c.Phase, &c.State, &c.N} }, s, "count deployment devices")
}

// maxFrom is how many states an update's condition may name: the
// statement has that many placeholders, padded with empty strings, so that
// its text, prepared once, never changes.
const maxFrom = 12

const updateDeploymentDeviceSQL = `UPDATE deployment_devices SET state = ?, reason = ?, transient = ?, progress = ?,
	from_version = COALESCE(NULLIF(?, ''), from_version), to_version = COALESCE(NULLIF(?, ''), to_version),
	attempt = attempt + ?, not_before = COALESCE(?, not_before), deadline = COALESCE(?, deadline), updated_at = ?
	WHERE tenant_id = ? AND deployment_id = ? AND device_id = ? AND (? = 0 OR attempt = ?)
	AND state IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	RETURNING attempt`

// updateSizes are the sizes of the multi-row INSERTs, largest first: a
// batch goes in as few of them as it takes (1 is the last resort), each
// size prepared once.
var updateSizes = []int{256, 32, 4, 1}

// chunkSize is the largest of updateSizes not over n (n > 0).
func chunkSize(n int) int {
	for _, size := range updateSizes {
		if size <= n {
			return size
		}
	}
	return 1
}

// historyInsertSQL inserts n steps of device history.
func historyInsertSQL(n int) string {
	return `INSERT INTO deployment_device_events (tenant_id, deployment_id, device_id, attempt, state, reason, progress, at) VALUES ` +
		strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?), ", n-1) + "(?, ?, ?, ?, ?, ?, ?, ?)"
}

// addDevicesSQL inserts n deployment devices, leaving those already in.
func addDevicesSQL(n int) string {
	const row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	return `INSERT INTO deployment_devices (` + deploymentDeviceCols + `) VALUES ` + strings.Repeat(row+", ", n-1) + row +
		` ON CONFLICT (deployment_id, device_id) DO NOTHING`
}

// queryIn runs a query that writes in the Store's transaction, through its
// prepared statement when prepare made one.
func (s *Store) queryIn(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = s.q(query)
	s.shared.stmtMu.Lock()
	st := s.shared.stmts[stmtKey{query: query}]
	s.shared.stmtMu.Unlock()
	if st == nil || s.tx == nil {
		return s.w.QueryContext(ctx, query, args...)
	}
	return s.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// UpdateDeploymentDevices implements steward.Store: one prepared UPDATE …
// RETURNING per update and multi-row INSERTs of the history, in one
// transaction.
func (s *Store) UpdateDeploymentDevices(ctx context.Context, updates []steward.DeploymentDeviceUpdate) ([]bool, error) {
	froms := make([][]any, len(updates))
	for i, u := range updates {
		if err := required("tenant", u.TenantID, "deployment", u.DeploymentID, "device", u.DeviceID); err != nil {
			return nil, invalid("update %d: %s", i, err.Error())
		}
		if !u.State.Valid() {
			return nil, invalid("update %d: state %q is unknown", i, u.State)
		}
		if u.At.IsZero() {
			return nil, invalid("update %d: a time is required", i)
		}
		from := u.From
		if len(from) == 0 {
			for _, st := range steward.UpdateStates {
				if st.Rank() < u.State.Rank() {
					from = append(from, st)
				}
			}
		}
		if len(from) > maxFrom {
			return nil, invalid("update %d: at most %d states to move from", i, maxFrom)
		}
		args := make([]any, maxFrom)
		for j := range args {
			args[j] = ""
			if j < len(from) {
				args[j] = string(from[j])
			}
		}
		froms[i] = args
	}
	applied := make([]bool, len(updates))
	if len(updates) == 0 {
		return applied, nil
	}
	// One prepared UPDATE … RETURNING per update, by primary key, in the
	// order given. (A set-based UPDATE … FROM a VALUES list was tried: on
	// SQLite its plan scans the table for each batch, and at 100,000 rows
	// it cost twice the CPU of this.)
	if s.tx == nil {
		for _, q := range []string{updateDeploymentDeviceSQL} {
			if err := s.prepare(ctx, q); err != nil {
				return nil, s.fail(err, "update deployment devices: prepare")
			}
		}
		for _, n := range updateSizes {
			if err := s.prepare(ctx, historyInsertSQL(n)); err != nil {
				return nil, s.fail(err, "update deployment devices: prepare")
			}
		}
	}
	err := s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		type hist struct {
			i       int
			attempt int
		}
		var done []hist
		for i, u := range updates {
			inc := 0
			if u.NextAttempt {
				inc = 1
			}
			args := []any{string(u.State), u.Reason, u.Transient, u.Progress, u.PreviousVersion, u.Version, inc,
				nullTS(u.NotBefore), nullTS(u.Deadline), ts(u.At), u.TenantID, u.DeploymentID, u.DeviceID,
				u.Attempt, u.Attempt}
			rows, err := t.queryIn(ctx, updateDeploymentDeviceSQL, append(args, froms[i]...)...)
			if err != nil {
				return t.fail(err, "update deployment device %s", u.DeviceID)
			}
			var attempt int
			ok := rows.Next()
			if ok {
				err = rows.Scan(&attempt)
			}
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = rows.Err()
			}
			if err != nil {
				return t.fail(err, "update deployment device %s", u.DeviceID)
			}
			if ok {
				applied[i] = true
				done = append(done, hist{i, attempt})
			}
		}
		for len(done) > 0 {
			size := chunkSize(len(done))
			batch := done[:size]
			done = done[size:]
			args := make([]any, 0, len(batch)*8)
			for _, h := range batch {
				u := updates[h.i]
				args = append(args, u.TenantID, u.DeploymentID, u.DeviceID, h.attempt, string(u.State), u.Reason, u.Progress, ts(u.At))
			}
			if _, err := t.execIn(ctx, t.tx, historyInsertSQL(size), args...); err != nil {
				return t.fail(err, "record deployment device history")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// ListDeploymentDeviceEvents implements steward.Store.
func (s *Store) ListDeploymentDeviceEvents(ctx context.Context, tenantID, deploymentID, deviceID string) ([]steward.DeploymentDeviceEvent, error) {
	rows, err := s.query(ctx, `SELECT deployment_id, device_id, attempt, state, reason, progress, at FROM deployment_device_events
		WHERE tenant_id = ? AND deployment_id = ? AND device_id = ? ORDER BY id LIMIT 1000`, tenantID, deploymentID, deviceID)
	if err != nil {
		return nil, s.fail(err, "list deployment device history")
	}
	return collect(rows, func(e *steward.DeploymentDeviceEvent) []any {
		return []any{&e.DeploymentID, &e.DeviceID, &e.Attempt, &e.State, &e.Reason, &e.Progress, timeCol{&e.At}}
	}, s, "list deployment device history")
}
