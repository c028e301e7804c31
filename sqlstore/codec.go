package sqlstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// Times are stored in UTC with microsecond precision, PostgreSQL's. SQLite
// keeps them as INTEGER Unix microseconds (its connections bind time.Time
// that way: _time_integer_format=unix_micro), which sorts and compares
// like the instant it is and costs 8 bytes in the samples table.

// ts prepares a time for a NOT NULL column.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTS prepares a time for a nullable column: the zero time is NULL.
func nullTS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ts(t)
}

// nullTSPtr is nullTS for an optional time.
func nullTSPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return nullTS(*t)
}

// timeCol scans a time column of either backend: Unix microseconds from
// SQLite, a time.Time from PostgreSQL; NULL is the zero time.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	case time.Time:
		*c.t = v.UTC()
	default:
		return fmt.Errorf("scan time: unexpected %T", src)
	}
	return nil
}

// timePtrCol scans a nullable time column into a *time.Time (nil for NULL).
type timePtrCol struct{ t **time.Time }

// Scan implements sql.Scanner.
func (c timePtrCol) Scan(src any) error {
	if src == nil {
		*c.t = nil
		return nil
	}
	var t time.Time
	if err := (timeCol{&t}).Scan(src); err != nil {
		return err
	}
	*c.t = &t
	return nil
}

// jsonCol scans a JSON column (TEXT in SQLite, JSONB in PostgreSQL) into v.
type jsonCol struct{ v any }

// Scan implements sql.Scanner.
func (c jsonCol) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan json: unexpected %T", src)
	}
	if err := json.Unmarshal(b, c.v); err != nil {
		return fmt.Errorf("scan json: %w", err)
	}
	return nil
}

// jsonText encodes v for a JSON column. Both drivers take JSON text as a
// string: SQLite stores it, pgx sends it as jsonb as is. A nil map or slice
// is stored as its empty JSON value so that readers always get one.
func jsonText(v any, empty string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode json: %w", err)
	}
	if string(b) == "null" {
		return empty, nil
	}
	return string(b), nil
}
