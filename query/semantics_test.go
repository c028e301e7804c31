package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"

	steward "github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/pgtest"
)

// fixtureDevice is one row of testdata/devices.json; nil means NULL.
type fixtureDevice struct {
	ID         string          `json:"id"`
	TenantID   string          `json:"tenant_id"`
	Model      string          `json:"model"`
	Serial     string          `json:"serial"`
	Hardware   string          `json:"hardware"`
	Firmware   *string         `json:"firmware"`
	Site       *string         `json:"site"`
	Owner      *string         `json:"owner"`
	State      string          `json:"state"`
	Online     bool            `json:"online"`
	Labels     json.RawMessage `json:"labels"`
	Attributes json.RawMessage `json:"attributes"`
}

// loadDevices reads the fixture devices.
func loadDevices(t *testing.T) []fixtureDevice {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "devices.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ds []fixtureDevice
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// jsonColumn is a JSON fixture value as the column holds it: NULL for null.
func jsonColumn(m json.RawMessage) any {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return string(m)
}

// testDB is a devices table in a real database.
type testDB struct {
	db      *sql.DB
	dialect Dialect
	table   string // possibly schema-qualified
}

// The tables hold the brief's column names (those the compiler reads) with
// each backend's types: JSON as TEXT and online as INTEGER in SQLite, JSONB
// and boolean in PostgreSQL.
const (
	sqliteTable = `CREATE TABLE %s (
	id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, model TEXT, serial TEXT, hardware TEXT,
	firmware TEXT, firmware_key TEXT NOT NULL, site TEXT, owner TEXT, labels TEXT, attributes TEXT,
	state TEXT NOT NULL, online INTEGER NOT NULL DEFAULT 0)`
	postgresTable = `CREATE TABLE %s (
	id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, model TEXT, serial TEXT, hardware TEXT,
	firmware TEXT, firmware_key TEXT NOT NULL, site TEXT, owner TEXT, labels JSONB, attributes JSONB,
	state TEXT NOT NULL, online BOOLEAN NOT NULL DEFAULT FALSE)`
)

// fill creates the table and loads the fixture into it.
func (tdb *testDB) fill(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	create, ins := sqliteTable, `INSERT INTO %s (id, tenant_id, model, serial, hardware, firmware, firmware_key, site, owner, labels, attributes, state, online)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	if tdb.dialect == Postgres {
		create, ins = postgresTable, `INSERT INTO %s (id, tenant_id, model, serial, hardware, firmware, firmware_key, site, owner, labels, attributes, state, online)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11::text::jsonb, $12, $13)`
	}
	if _, err := tdb.db.ExecContext(ctx, fmt.Sprintf(create, tdb.table)); err != nil {
		t.Fatalf("create table: %v", err)
	}
	for _, d := range loadDevices(t) {
		key := "" // the store's default for a device that never reported firmware
		if d.Firmware != nil {
			key = steward.VersionKey(*d.Firmware)
		}
		_, err := tdb.db.ExecContext(ctx, fmt.Sprintf(ins, tdb.table),
			d.ID, d.TenantID, d.Model, d.Serial, d.Hardware, d.Firmware, key, d.Site, d.Owner,
			jsonColumn(d.Labels), jsonColumn(d.Attributes), d.State, d.Online)
		if err != nil {
			t.Fatalf("insert %s: %v", d.ID, err)
		}
	}
}

// match returns the IDs of tenant t1's devices that src selects. The
// compiled condition is put after two placeholders of the caller's own, as
// the store does, so that numbering from firstArg and the condition's
// parentheses are tested too (device d99 is in tenant t2).
func (tdb *testDB) match(t *testing.T, src string) []string {
	t.Helper()
	e, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	cond, args, err := Compile(e, tdb.dialect, 3)
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	prefix := "tenant_id = ? AND id <> ?"
	if tdb.dialect == Postgres {
		prefix = "tenant_id = $1 AND id <> $2"
	}
	q := fmt.Sprintf("SELECT id FROM %s WHERE %s AND %s ORDER BY id", tdb.table, prefix, cond)
	rows, err := tdb.db.QueryContext(t.Context(), q, append([]any{"t1", "none"}, args...)...)
	if err != nil {
		t.Fatalf("%s: %v\nSQL: %s\nargs: %s", src, err, q, formatArgs(args))
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	return ids
}

// ids expands "d01 d02" into a list; "" is no device.
func ids(s string) []string { return append([]string{}, strings.Fields(s)...) }

const allT1 = "d01 d02 d03 d04 d05 d06 d07 d08 d09 d10 d11 d12"

// semanticsCases say which fixture devices each query selects. Both
// backends must agree with them.
var semanticsCases = []struct{ name, query, want string }{
	{"empty query", ``, allT1},
	{"equality", `model = "gw-100"`, "d01 d02 d12"},
	{"doc example", `model = "gw-100" AND firmware < "2.0.0"`, "d01 d02"},
	{"case-sensitive", `model = Gw-100`, "d11"},
	{"id ordering", `id > d10`, "d11 d12"},

	{"semver greater", `firmware > 1.9.0`, "d02 d03 d04 d05 d06 d11 d12"},
	{"semver less: pre-releases precede their release", `firmware < 1.10.0`, "d01 d03 d04 d10"},
	{"semver pre-release order", `firmware >= 1.10.0-rc.1`, "d02 d03 d05 d06 d11 d12"},
	{"semver beta before rc", `firmware < 1.10.0-rc.1`, "d01 d04 d10"},
	{"semver short version", `firmware <= 1.2`, "d10"},
	{"semver v prefix and 10 after 2", `firmware >= v2.1`, "d06 d12"},
	{"firmware equality is exact text", `firmware = 1.10.0`, "d02"},
	{"firmware != includes missing", `firmware != 1.10.0`, "d01 d03 d04 d05 d06 d07 d08 d09 d10 d11 d12"},
	{"firmware glob", `firmware ~ "1.10.*"`, "d02 d03 d04 d11"},
	{"NOT firmware ordering includes unknown firmware", `NOT firmware < 2.0.0`, "d05 d06 d07 d08 d09 d12"},

	{"glob star", `model ~ "gw-*"`, "d01 d02 d03 d04 d05 d06 d12"},
	{"glob question mark", `model ~ "gw?100"`, "d01 d02 d07 d12"},
	{"glob brackets are literal", `model ~ "a[b]c"`, "d09"},
	{"glob bracket prefix", `model ~ "a[*"`, "d09"},
	{"glob percent is literal", `model ~ "*%*"`, "d10"},
	{"glob underscore is literal", `model ~ "*_*"`, "d10"},
	{"glob backslash is literal", `model ~ "*\\"`, "d10"},
	{"glob mixed specials", `model ~ "5?%_off\\"`, "d10"},
	{"glob whole literal", `model ~ "50%_off\\"`, "d10"},
	{"glob on label", `labels.site ~ "plant-*"`, "d01 d02 d06 d11"},
	{"doc example with NOT online", `labels.site ~ "plant-*" AND NOT online`, "d02"},
	{"label equal to a star", `labels.site = "plant-*"`, "d06"},

	{"NULL column equality", `site = plant-1`, "d01 d05 d07"},
	{"!= includes NULL", `site != plant-1`, "d02 d03 d04 d06 d08 d09 d10 d11 d12"},
	{"NOT = includes NULL", `NOT site = plant-1`, "d02 d03 d04 d06 d08 d09 d10 d11 d12"},
	{"!= on owner includes NULL", `owner != alice`, "d02 d03 d05 d06 d07 d08 d09 d10 d11 d12"},
	{"ordering excludes NULL", `site < p`, "d04 d09 d10"},
	{"NOT ordering includes NULL", `NOT site < p`, "d01 d02 d03 d05 d06 d07 d08 d11 d12"},

	{"label equality", `labels.tier = gold`, "d01 d12"},
	{"label != matches devices without it", `labels.tier != gold`, "d02 d03 d04 d05 d06 d07 d08 d09 d10 d11"},
	{"label key with a dot", `labels.k.dot = v`, "d09"},
	{"label ordering", `labels.tier > c`, "d01 d04 d12"},
	{"has label", `labels.site ~ "*"`, "d01 d02 d04 d06 d07 d11"},

	{"attribute numeric greater", `attributes.temp > 50`, "d02"},
	{"attribute numeric less skips strings", `attributes.temp < 50`, "d01 d06 d12"},
	{"attribute decimal equality", `attributes.temp = 0.1`, "d06"},
	{"attribute text", `attributes.temp = hot`, "d04"},
	{"number does not match a string attribute", `attributes.rack = 12`, ""},
	{"string does not match a number attribute", `attributes.rack = "7"`, ""},
	{"attribute string", `attributes.rack = "12"`, "d01"},
	{"attribute text ordering", `attributes.rack > "1"`, "d01 d09"},
	{"attribute integer and float", `attributes.cores = 4`, "d01 d11"},
	{"attribute numeric ordering", `attributes.cores >= 8`, "d04 d10"},
	{"attribute != includes missing", `attributes.cores != 4`, "d02 d03 d04 d05 d06 d07 d08 d09 d10 d12"},
	{"attribute big integer exact", `attributes.big = 9007199254740993`, "d10"},
	{"attribute big integer ordering", `attributes.big > 9007199254740992`, "d10"},
	{"attribute boolean true", `attributes.secure_boot = true`, "d01"},
	{"attribute boolean false", `attributes.secure_boot = false`, "d02"},
	{"attribute boolean !=", `attributes.secure_boot != true`, "d02 d03 d04 d05 d06 d07 d08 d09 d10 d11 d12"},
	{"attribute string true", `attributes.secure_boot = "true"`, "d07"},
	{"attribute glob with specials", `attributes.note ~ "50%_*"`, "d06"},
	{"attribute glob", `attributes.region ~ "eu-*"`, "d01"},
	{"object is not text", `attributes.obj ~ "*"`, ""},
	{"array is not a number", `attributes.arr > 0`, ""},

	{"online", `online`, "d01 d04 d06 d09 d11 d12"},
	{"NOT online", `NOT online`, "d02 d03 d05 d07 d08 d10"},
	{"online = false", `online = false`, "d02 d03 d05 d07 d08 d10"},
	{"online != true", `online != true`, "d02 d03 d05 d07 d08 d10"},

	{"state", `state = active`, "d01 d02 d06 d09 d10 d11"},
	{"state !=", `state != active`, "d03 d04 d05 d07 d08 d12"},
	{"state glob", `state ~ "*ed"`, "d03 d04 d07 d08 d12"},

	{"NOT binds tighter than OR", `NOT state = active OR online`, "d01 d03 d04 d05 d06 d07 d08 d09 d11 d12"},
	{"NOT of a group", `NOT (state = active OR online)`, "d03 d05 d07 d08"},
	{"AND binds tighter than OR", `model = gw-300 OR model = gw-200 AND online`, "d04 d05 d06"},
	{"parentheses", `(model = gw-300 OR model = gw-200) AND online`, "d04 d06"},
	{"double NOT", `NOT NOT online`, "d01 d04 d06 d09 d11 d12"},
	{"NOT over NULL inside AND", `NOT (labels.tier = gold AND attributes.temp > 0)`, "d02 d03 d04 d05 d06 d07 d08 d09 d10 d11 d12"},
	{"NOT over !=", `hardware = revB AND NOT owner = bob`, "d03 d10"},

	{"hostile value is a string", `serial = "' OR 1=1 --"`, "d07"},
	{"hostile value matches nothing", `model = "x'); DROP TABLE devices; --"`, ""},
	{"hostile quote in owner", `owner = "alice' OR '1'='1"`, ""},
	{"hostile double quote in label", `labels.site = "\" OR 1=1 --"`, ""},
	{"hostile glob", `model ~ "*' OR '1'='1"`, ""},
}

// runSemantics runs every case against tdb, then checks that the table is
// as it was (the hostile values changed nothing).
func runSemantics(t *testing.T, tdb *testDB) {
	for _, tc := range semanticsCases {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := tdb.match(t, tc.query), ids(tc.want); !slices.Equal(got, want) {
				t.Errorf("%s\n got %v\nwant %v", tc.query, got, want)
			}
		})
	}
	var n int
	if err := tdb.db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+tdb.table).Scan(&n); err != nil || n != 13 {
		t.Errorf("after the queries the table has %d rows (%v), want 13", n, err)
	}
}

func TestSemanticsSQLite(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // each connection would have its own in-memory database
	t.Cleanup(func() { db.Close() })
	tdb := &testDB{db: db, dialect: SQLite, table: "devices"}
	tdb.fill(t)
	runSemantics(t, tdb)
}

func TestSemanticsPostgres(t *testing.T) {
	t.Parallel()
	base, ok := pgtest.URL()
	if !ok {
		t.Skip("STEWARD_TEST_POSTGRES is not set: set it to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the query semantics on PostgreSQL")
	}
	schema, _ := pgtest.Schema(t, base, "query_test_")
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tdb := &testDB{db: db, dialect: Postgres, table: schema + ".devices"}
	tdb.fill(t)
	runSemantics(t, tdb)
}
