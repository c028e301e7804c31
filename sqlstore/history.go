package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Device event and presence list limits.
const (
	DefaultDeviceEventLimit = 100
	MaxDeviceEventLimit     = 1000
	DefaultPresenceLimit    = 100
	MaxPresenceLimit        = 10000
)

// endOfTime stands for "no upper bound" in time ranges.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// AddDeviceEvents implements steward.Store: every event is checked first,
// then all are written in one transaction (the caller's, inside InTx).
// The foreign key on (tenant_id, device_id) keeps an event out of a device
// of another tenant.
func (s *Store) AddDeviceEvents(ctx context.Context, events []steward.DeviceEvent) error {
	if len(events) == 0 {
		return nil
	}
	fields := make([]string, len(events))
	for i := range events {
		e := &events[i]
		if err := e.Validate(); err != nil {
			return invalid("event %d: %s", i, steward.ErrorMessage(err))
		}
		f, err := jsonText(e.Fields, "{}")
		if err != nil {
			return invalid("event %d: fields are not JSON-encodable", i)
		}
		fields[i] = f
	}
	return s.InTx(ctx, func(tx steward.Store) error {
		st := tx.(*Store)
		for i, e := range events {
			_, err := st.exec(ctx, `INSERT INTO device_events (tenant_id, device_id, type, severity, message, fields, at, received)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				e.TenantID, e.DeviceID, e.Type, string(e.Severity), e.Message, fields[i], ts(e.At), ts(e.Received))
			if err != nil && s.d.IsForeignKeyViolation(err) {
				return steward.WrapError(steward.CodeNotFound, err, "device %s not found", e.DeviceID)
			}
			if err != nil {
				return s.fail(err, "add events of device %s", e.DeviceID)
			}
		}
		return nil
	})
}

// ListDeviceEvents implements steward.Store: the device's events matching
// f, newest first (ties in order of arrival, newest first), at most f.Limit
// (default 100, at most 1000).
func (s *Store) ListDeviceEvents(ctx context.Context, tenantID, deviceID string, f steward.DeviceEventFilter) ([]steward.DeviceEvent, error) {
	limit, err := limitOf(f.Limit, DefaultDeviceEventLimit, MaxDeviceEventLimit)
	if err != nil {
		return nil, err
	}
	if f.Type != "" && !steward.ValidEventType(f.Type) {
		return nil, invalid("event type %q: use 1 to %d letters, digits, '_', '-', '.'", f.Type, steward.MaxEventTypeLen)
	}
	if f.MinSeverity != "" && !f.MinSeverity.Valid() {
		return nil, invalid("severity %q: want one of debug, info, notice, warning, error, critical", f.MinSeverity)
	}
	from, to, err := timeRange(f.From, f.To)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`SELECT id, tenant_id, device_id, type, severity, message, fields, at, received FROM device_events
		WHERE tenant_id = ? AND device_id = ? AND at >= ? AND at < ?`)
	args := []any{tenantID, deviceID, from, to}
	if f.Type != "" {
		b.WriteString(` AND type = ?`)
		args = append(args, f.Type)
	}
	if f.MinSeverity != "" && f.MinSeverity.Rank() > 0 {
		sevs := f.MinSeverity.AtLeast()
		b.WriteString(` AND severity IN (?` + strings.Repeat(", ?", len(sevs)-1) + `)`)
		for _, v := range sevs {
			args = append(args, string(v))
		}
	}
	b.WriteString(` ORDER BY at DESC, id DESC LIMIT ?`)
	args = append(args, limit)
	rows, err := s.query(ctx, b.String(), args...)
	if err != nil {
		return nil, s.fail(err, "list device events")
	}
	return collect(rows, func(e *steward.DeviceEvent) []any {
		return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.Type, &e.Severity, &e.Message, fieldsCol{&e.Fields}, timeCol{&e.At}, timeCol{&e.Received}}
	}, s, "list device events")
}

// fieldsCol scans an event's fields, keeping numbers as they were sent
// (json.Number), so that a 64-bit counter survives the round trip; an
// empty object reads as nil.
type fieldsCol struct{ m *map[string]any }

// Scan implements sql.Scanner.
func (c fieldsCol) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*c.m = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan event fields: unexpected %T", src)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("scan event fields: %w", err)
	}
	if len(m) == 0 {
		m = nil
	}
	*c.m = m
	return nil
}

// AddPresenceEvent implements steward.Store.
func (s *Store) AddPresenceEvent(ctx context.Context, e steward.PresenceEvent) error {
	if err := required("tenant id", e.TenantID, "device id", e.DeviceID); err != nil {
		return err
	}
	if e.At.IsZero() {
		return invalid("a presence event needs its time")
	}
	_, err := s.exec(ctx, `INSERT INTO presence_events (tenant_id, device_id, online, at, remote_addr) VALUES (?, ?, ?, ?, ?)`,
		e.TenantID, e.DeviceID, e.Online, ts(e.At), e.RemoteAddr)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "device %s not found", e.DeviceID)
	}
	return s.fail(err, "add presence event of device %s", e.DeviceID)
}

// ListPresenceEvents implements steward.Store: newest first, ties in order
// of arrival, newest first.
func (s *Store) ListPresenceEvents(ctx context.Context, tenantID, deviceID string, from, to time.Time, limit int) ([]steward.PresenceEvent, error) {
	limit, err := limitOf(limit, DefaultPresenceLimit, MaxPresenceLimit)
	if err != nil {
		return nil, err
	}
	f, t, err := timeRange(from, to)
	if err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT id, tenant_id, device_id, online, at, remote_addr FROM presence_events
		WHERE tenant_id = ? AND device_id = ? AND at >= ? AND at < ? ORDER BY at DESC, id DESC LIMIT ?`,
		tenantID, deviceID, f, t, limit)
	if err != nil {
		return nil, s.fail(err, "list presence events")
	}
	return collect(rows, func(e *steward.PresenceEvent) []any {
		return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.Online, timeCol{&e.At}, &e.RemoteAddr}
	}, s, "list presence events")
}

// CountPresenceEvents implements steward.Store.
func (s *Store) CountPresenceEvents(ctx context.Context, tenantID, deviceID string, from, to time.Time) (steward.PresenceCounts, error) {
	var c steward.PresenceCounts
	f, t, err := timeRange(from, to)
	if err != nil {
		return c, err
	}
	// The CASE avoids comparing a boolean with an integer, which the two
	// backends spell differently.
	err = s.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN online THEN 1 ELSE 0 END), 0) FROM presence_events
		WHERE tenant_id = ? AND device_id = ? AND at >= ? AND at < ?`, tenantID, deviceID, f, t).Scan(&c.Disconnects, &c.Connects)
	if err != nil {
		return steward.PresenceCounts{}, s.fail(err, "count presence events")
	}
	c.Disconnects -= c.Connects // the COUNT was of both
	return c, nil
}

// limitOf checks a list limit: negative is invalid, 0 the default, above
// most the most.
func limitOf(limit, def, most int) (int, error) {
	switch {
	case limit < 0:
		return 0, invalid("limit must not be negative")
	case limit == 0:
		return def, nil
	case limit > most:
		return most, nil
	}
	return limit, nil
}

// timeRange prepares [from, to) for a query: a zero to is no upper bound,
// and to before from is invalid.
func timeRange(from, to time.Time) (time.Time, time.Time, error) {
	if to.IsZero() {
		to = endOfTime
	}
	if to.Before(from) {
		return time.Time{}, time.Time{}, invalid("the end of the time range is before its start")
	}
	return ts(from), ts(to), nil
}
