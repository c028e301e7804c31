package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/query"
)

// Dialect holds what differs between the SQL databases Steward runs on. The
// store writes every statement once, with `?` placeholders and standard SQL
// (ON CONFLICT … DO UPDATE, RETURNING, which SQLite ≥ 3.35 and PostgreSQL
// share); the schema, in the backend's migrations, absorbs the column type
// differences (booleans, times, JSON), and the drivers bind Go values to
// those types.
type Dialect struct {
	// Name names the backend in logs and errors ("sqlite", "postgres").
	Name string
	// Numbered says the driver wants $1, $2, … instead of ?.
	Numbered bool
	// Query is the dialect the fleet query language compiles to.
	Query query.Dialect
	// MaxParams is the most bind parameters one statement may carry.
	MaxParams int
	// ReadingArrays, when set, is a SELECT that turns four array
	// parameters (tenant IDs, device IDs, times, metrics objects as JSON
	// text: Go slices the driver sends as arrays) into rows of those
	// columns; WriteSamples then writes a batch's readings, and its devices'
	// latest values, with one INSERT … SELECT each instead of multi-row
	// INSERTs. On PostgreSQL:
	//	SELECT t, d, a, m::jsonb FROM unnest(?::text[], ?::text[], ?::timestamptz[], ?::text[]) AS u(t, d, a, m)
	ReadingArrays string
	// EachMetric returns the FROM item that expands the metrics object in
	// column col (a reading: {"metric": value, …}) into one row per
	// metric under alias: alias.key is the metric, MetricValue(alias) its
	// value as a double.
	EachMetric func(col, alias string) string
	// MetricValue returns the value of a row of EachMetric as a double.
	MetricValue func(alias string) string
	// KeepFirst returns the merge of two metrics objects in which a
	// metric of stored keeps its value and incoming adds the others: how a
	// reading already stored takes a redelivery or a later message of the
	// same time.
	KeepFirst func(incoming, stored string) string
	// TimeBucket returns an expression giving the start of the bucket of
	// width (a whole number of seconds dividing a day) that the time
	// column col falls in, on the Unix epoch's grid.
	TimeBucket func(col string, width time.Duration) string
	// LockRollups, when set, is a statement run first in the rollup
	// transaction that takes a lock held until it ends, so that two nodes'
	// rollups run one after the other and the later one reads everything
	// the earlier read. SQLite needs none: its write transactions already
	// exclude each other.
	LockRollups string
	// ForUpdate, when set, is appended to a SELECT of rows the
	// transaction will write from what it read (" FOR UPDATE" on
	// PostgreSQL), so that no other writer changes them in between. SQLite
	// needs none: its one writer excludes the others.
	ForUpdate string
	// SkipLocked, when set, is appended to the SELECT that picks the
	// deliveries to claim (" FOR UPDATE SKIP LOCKED" on PostgreSQL), so
	// that two nodes claiming at once take different rows without waiting.
	// SQLite needs none: its one writer claims in turn.
	SkipLocked string
	// IsUniqueViolation reports whether err is a unique or primary key
	// constraint violation.
	IsUniqueViolation func(err error) bool
	// IsForeignKeyViolation reports whether err is a foreign key violation:
	// the row refers to a tenant or device that does not exist (in its tenant).
	IsForeignKeyViolation func(err error) bool
	// IsTransient reports whether err is worth retrying later (a lock held
	// too long, a serialization failure).
	IsTransient func(err error) bool
	// LockMigrations, when set, serialises migrations between processes. It
	// is called on the connection that then applies them; unlock runs on the
	// same connection.
	LockMigrations func(ctx context.Context, c *sql.Conn) (unlock func(context.Context) error, err error)
}

// Rebind rewrites the `?` placeholders of q for the dialect, numbering them
// from first. Question marks inside quoted strings and identifiers are left
// alone. It is the only place the store's SQL differs in text between the
// backends.
func (d *Dialect) Rebind(q string, first int) string {
	if !d.Numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := first
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			n++
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
