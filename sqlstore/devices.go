package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/query"
)

// Device list limits of steward.DeviceQuery.
const (
	DefaultDeviceLimit = 100
	MaxDeviceLimit     = 1000
)

// deviceCols is the devices table in scanDevice's order.
const deviceCols = `id, tenant_id, enrollment_group_id, factory_id, factory_key_id, model, serial, hardware,
	firmware, site, latitude, longitude, owner, labels, attributes, warranty_end,
	state, state_reason, state_actor, state_changed_at,
	online, connected_since, last_seen, reconnects, remote_addr,
	created_at, updated_at, version`

func scanDevice(d *steward.Device) []any {
	return []any{&d.ID, &d.TenantID, &d.EnrollmentGroupID, &d.FactoryID, &d.FactoryKeyID, &d.Model, &d.Serial, &d.Hardware,
		&d.Firmware, &d.Location.Site, &d.Location.Latitude, &d.Location.Longitude, &d.Owner,
		jsonCol{&d.Labels}, jsonCol{&d.Attributes}, timePtrCol{&d.WarrantyEnd},
		&d.State, &d.StateReason, &d.StateActor, timeCol{&d.StateChangedAt},
		&d.Presence.Online, timeCol{&d.Presence.ConnectedSince}, timeCol{&d.Presence.LastSeen}, &d.Presence.Reconnects, &d.Presence.RemoteAddr,
		timeCol{&d.CreatedAt}, timeCol{&d.UpdatedAt}, &d.Version}
}

// deviceJSON encodes a device's JSON columns.
func deviceJSON(d *steward.Device) (labels, attrs string, err error) {
	if labels, err = jsonText(d.Labels, "{}"); err != nil {
		return "", "", invalid("device labels: %v", err)
	}
	if attrs, err = jsonText(d.Attributes, "{}"); err != nil {
		return "", "", invalid("device attributes: %v", err)
	}
	return labels, attrs, nil
}

func checkDevice(d *steward.Device) error {
	if err := required("tenant id", d.TenantID); err != nil {
		return err
	}
	if !steward.ValidDeviceID(d.ID) {
		return invalid("device ID %q is not valid", d.ID)
	}
	if !d.State.Valid() {
		return invalid("device state %q is not valid", d.State)
	}
	for k := range d.Labels {
		if k == "" {
			return invalid("device label keys must not be empty")
		}
	}
	return nil
}

// CreateDevice implements steward.Store. The device is stored with the
// version it carries (normally 0); firmware_key is derived from Firmware.
func (s *Store) CreateDevice(ctx context.Context, d steward.Device) error {
	if err := checkDevice(&d); err != nil {
		return err
	}
	if d.Version < 0 {
		return invalid("device version must not be negative")
	}
	labels, attrs, err := deviceJSON(&d)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO devices (id, tenant_id, enrollment_group_id, factory_id, factory_key_id, model, serial, hardware,
			firmware, firmware_key, site, latitude, longitude, owner, labels, attributes, warranty_end,
			state, state_reason, state_actor, state_changed_at,
			online, connected_since, last_seen, reconnects, remote_addr,
			created_at, updated_at, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.TenantID, d.EnrollmentGroupID, d.FactoryID, d.FactoryKeyID, d.Model, d.Serial, d.Hardware,
		d.Firmware, steward.VersionKey(d.Firmware), d.Location.Site, d.Location.Latitude, d.Location.Longitude, d.Owner,
		labels, attrs, nullTSPtr(d.WarrantyEnd),
		string(d.State), d.StateReason, d.StateActor, ts(d.StateChangedAt),
		d.Presence.Online, nullTS(d.Presence.ConnectedSince), nullTS(d.Presence.LastSeen), d.Presence.Reconnects, d.Presence.RemoteAddr,
		ts(d.CreatedAt), ts(d.UpdatedAt), d.Version)
	switch {
	case err == nil:
		return nil
	case s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", d.TenantID)
	case s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "%s", s.deviceConflict(ctx, &d))
	}
	return s.fail(err, "create device %s", d.ID)
}

// deviceConflict explains which unique rule a device write broke (see
// groupConflict for why it reads outside the transaction).
func (s *Store) deviceConflict(ctx context.Context, d *steward.Device) string {
	var one int
	if d.FactoryID != "" && s.rdb.QueryRowContext(ctx, s.q(`SELECT 1 FROM devices WHERE tenant_id = ? AND factory_id = ? AND factory_id <> '' AND id <> ?`),
		d.TenantID, d.FactoryID, d.ID).Scan(&one) == nil {
		return "this factory identity is already bound to another device"
	}
	if s.rdb.QueryRowContext(ctx, s.q(`SELECT 1 FROM devices WHERE id = ?`), d.ID).Scan(&one) == nil {
		return "device ID " + d.ID + " is already in use"
	}
	return "device ID or factory identity already in use"
}

// GetDevice implements steward.Store.
func (s *Store) GetDevice(ctx context.Context, tenantID, id string) (steward.Device, error) {
	var d steward.Device
	err := s.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanDevice(&d)...)
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("device %s not found", id)
	}
	return d, s.fail(err, "get device %s", id)
}

// DeviceByFactoryID implements steward.Store.
func (s *Store) DeviceByFactoryID(ctx context.Context, tenantID, factoryID string) (steward.Device, error) {
	var d steward.Device
	if factoryID == "" {
		return d, notFound("no device has an empty factory ID")
	}
	// The repeated `factory_id <> ''` lets SQLite use the partial unique
	// index; without it every enrollment scans the tenant's devices.
	err := s.queryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE tenant_id = ? AND factory_id = ? AND factory_id <> ''`, tenantID, factoryID).Scan(scanDevice(&d)...)
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("no device with this factory identity")
	}
	return d, s.fail(err, "find device by factory ID")
}

// UpdateDevice implements steward.Store: it writes every field but the
// identity (ID, tenant), the creation time and the presence fields, when
// d.Version is the stored version, and bumps the version.
func (s *Store) UpdateDevice(ctx context.Context, d steward.Device) (steward.Device, error) {
	if err := checkDevice(&d); err != nil {
		return steward.Device{}, err
	}
	labels, attrs, err := deviceJSON(&d)
	if err != nil {
		return steward.Device{}, err
	}
	var out steward.Device
	err = s.w.QueryRowContext(ctx, s.q(`UPDATE devices SET enrollment_group_id = ?, factory_id = ?, factory_key_id = ?,
			model = ?, serial = ?, hardware = ?, firmware = ?, firmware_key = ?,
			site = ?, latitude = ?, longitude = ?, owner = ?, labels = ?, attributes = ?, warranty_end = ?,
			state = ?, state_reason = ?, state_actor = ?, state_changed_at = ?,
			updated_at = ?, version = version + 1
		WHERE tenant_id = ? AND id = ? AND version = ?
		RETURNING `+deviceCols),
		d.EnrollmentGroupID, d.FactoryID, d.FactoryKeyID,
		d.Model, d.Serial, d.Hardware, d.Firmware, steward.VersionKey(d.Firmware),
		d.Location.Site, d.Location.Latitude, d.Location.Longitude, d.Owner, labels, attrs, nullTSPtr(d.WarrantyEnd),
		string(d.State), d.StateReason, d.StateActor, ts(d.StateChangedAt),
		ts(d.UpdatedAt),
		d.TenantID, d.ID, d.Version,
	).Scan(scanDevice(&out)...)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, sql.ErrNoRows):
		// Nothing matched: a missing device, or a stale version.
		var one int
		err := s.queryRow(ctx, `SELECT 1 FROM devices WHERE tenant_id = ? AND id = ?`, d.TenantID, d.ID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return steward.Device{}, notFound("device %s not found", d.ID)
		}
		if err != nil {
			return steward.Device{}, s.fail(err, "update device %s", d.ID)
		}
		return steward.Device{}, steward.Errorf(steward.CodeConflict, "device %s was changed concurrently (version %d is stale)", d.ID, d.Version)
	case s.d.IsUniqueViolation(err):
		return steward.Device{}, steward.WrapError(steward.CodeConflict, err, "%s", s.deviceConflict(ctx, &d))
	}
	return steward.Device{}, s.fail(err, "update device %s", d.ID)
}

// UpdatePresence implements steward.Store. It leaves the version alone so
// that presence never makes an operator's update conflict.
func (s *Store) UpdatePresence(ctx context.Context, tenantID, deviceID string, p steward.Presence) error {
	res, err := s.exec(ctx, `UPDATE devices SET online = ?, connected_since = ?, last_seen = ?, reconnects = ?, remote_addr = ?
		WHERE tenant_id = ? AND id = ?`,
		p.Online, nullTS(p.ConnectedSince), nullTS(p.LastSeen), p.Reconnects, p.RemoteAddr, tenantID, deviceID)
	if err != nil {
		return s.fail(err, "update presence of device %s", deviceID)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "update presence of device %s", deviceID)
	}
	if n == 0 {
		return notFound("device %s not found", deviceID)
	}
	return nil
}

// TouchDevices implements steward.Store.
func (s *Store) TouchDevices(ctx context.Context, seen []steward.DeviceSeen) error {
	if len(seen) == 0 {
		return nil
	}
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		for _, d := range seen {
			if d.At.IsZero() {
				return steward.Errorf(steward.CodeInvalid, "touch device %s: no time", d.DeviceID)
			}
			_, err := t.exec(ctx, `UPDATE devices SET last_seen = ?
				WHERE tenant_id = ? AND id = ? AND (last_seen IS NULL OR last_seen < ?)`,
				ts(d.At), d.TenantID, d.DeviceID, ts(d.At))
			if err != nil {
				return t.fail(err, "touch device %s", d.DeviceID)
			}
		}
		return nil
	})
}

// deviceFilter compiles q's query into a condition over the tenant's
// devices, numbering its placeholders from firstArg.
func (s *Store) deviceFilter(q steward.DeviceQuery, firstArg int) (string, []any, error) {
	e, err := query.Parse(q.Query)
	if err != nil {
		return "", nil, err // CodeInvalid with the position, as the caller should see it
	}
	if e == nil {
		return "", nil, nil
	}
	cond, args, err := query.Compile(e, s.d.Query, firstArg)
	if err != nil {
		return "", nil, s.fail(err, "compile device query")
	}
	return cond, args, nil
}

// ListDevices implements steward.Store: the devices matching q, ordered by
// ID, after q.After, at most q.Limit (default 100, at most 1000).
func (s *Store) ListDevices(ctx context.Context, tenantID string, q steward.DeviceQuery) ([]steward.Device, error) {
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, invalid("limit must not be negative")
	case limit == 0:
		limit = DefaultDeviceLimit
	case limit > MaxDeviceLimit:
		limit = MaxDeviceLimit
	}
	// The statement is put together in three parts because the compiled
	// condition comes with its own placeholders (and, on PostgreSQL, may
	// hold a ? operator that must not be rebound).
	var b strings.Builder
	b.WriteString(`SELECT ` + deviceCols + ` FROM devices WHERE tenant_id = ?`)
	args := []any{tenantID}
	if q.After != "" {
		b.WriteString(` AND id > ?`)
		args = append(args, q.After)
	}
	head := s.d.Rebind(b.String(), 1)
	cond, condArgs, err := s.deviceFilter(q, len(args)+1)
	if err != nil {
		return nil, err
	}
	stmt := head
	if cond != "" {
		stmt += ` AND (` + cond + `)`
		args = append(args, condArgs...)
	}
	stmt += s.d.Rebind(` ORDER BY id LIMIT ?`, len(args)+1)
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, s.fail(err, "list devices")
	}
	return collect(rows, scanDevice, s, "list devices")
}

// CountDevices implements steward.Store: how many of the tenant's devices
// match q.Query (After and Limit do not apply).
func (s *Store) CountDevices(ctx context.Context, tenantID string, q steward.DeviceQuery) (int, error) {
	stmt := s.d.Rebind(`SELECT COUNT(*) FROM devices WHERE tenant_id = ?`, 1)
	args := []any{tenantID}
	cond, condArgs, err := s.deviceFilter(q, 2)
	if err != nil {
		return 0, err
	}
	if cond != "" {
		stmt += ` AND (` + cond + `)`
		args = append(args, condArgs...)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, stmt, args...).Scan(&n); err != nil {
		return 0, s.fail(err, "count devices")
	}
	return n, nil
}
