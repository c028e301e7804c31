package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/steward-iot/steward"
)

func TestRebind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		first int
		want  string
	}{
		{"SELECT 1", 1, "SELECT 1"},
		{"a = ? AND b = ?", 1, "a = $1 AND b = $2"},
		{"a = ? AND b = ?", 4, "a = $4 AND b = $5"},
		{"x = '?' AND y = ?", 1, "x = '?' AND y = $1"},
		{`"odd?col" = ? AND z = 'it''s ?'`, 2, `"odd?col" = $2 AND z = 'it''s ?'`},
		{"VALUES (?,?),(?,?)", 1, "VALUES ($1,$2),($3,$4)"},
	}
	pg := &Dialect{Numbered: true}
	lite := &Dialect{}
	for _, tc := range tests {
		if got := pg.Rebind(tc.in, tc.first); got != tc.want {
			t.Errorf("Rebind(%q, %d) = %q, want %q", tc.in, tc.first, got, tc.want)
		}
		if got := lite.Rebind(tc.in, tc.first); got != tc.in {
			t.Errorf("unnumbered Rebind(%q) = %q, want it unchanged", tc.in, got)
		}
	}
}

func TestMigrationsOrder(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"0010_later.sql": {Data: []byte("B")},
		"0002_early.sql": {Data: []byte("A")},
		"README.md":      {Data: []byte("not a migration")},
		"old/0001_x.sql": {Data: []byte("in a directory")},
	}
	ms, err := Migrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := []Migration{{2, "0002_early.sql", "A"}, {10, "0010_later.sql", "B"}}
	if !reflect.DeepEqual(ms, want) {
		t.Fatalf("Migrations = %+v, want %+v", ms, want)
	}
	for name, bad := range map[string]fstest.MapFS{
		"no number":   {"init.sql": {Data: []byte("x")}},
		"zero":        {"0000_init.sql": {Data: []byte("x")}},
		"same number": {"1_a.sql": {Data: []byte("x")}, "0001_b.sql": {Data: []byte("x")}},
		"none":        {},
	} {
		if _, err := Migrations(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLatestOf(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := func(tenant, dev, metric string, v float64, sec int) steward.Sample {
		return steward.Sample{TenantID: tenant, DeviceID: dev, Metric: metric, Value: v, At: t0.Add(time.Duration(sec) * time.Second)}
	}
	in := []steward.Sample{
		s("b", "d1", "cpu", 1, 5),
		s("a", "d2", "cpu", 2, 1),
		s("a", "d1", "mem", 3, 1),
		s("a", "d1", "mem", 4, 3), // newest
		s("a", "d1", "mem", 5, 2),
		s("a", "d1", "mem", 6, 3), // same time as the newest: the first stays
	}
	want := []steward.Sample{in[3], in[1], in[0]}
	if got := latestOf(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("latestOf = %+v, want %+v", got, want)
	}
}

// TestLatestOfAsDefined checks latestOf against its definition, written
// the plain way (one map over all three keys, one sort), on random
// batches: devices interleaved, some with more metrics than the linear
// search takes, equal times, several tenants.
func TestLatestOfAsDefined(t *testing.T) {
	t.Parallel()
	plain := func(samples []steward.Sample) []steward.Sample {
		type key struct{ t, d, m string }
		idx := map[key]int{}
		var out []steward.Sample
		for _, sm := range samples {
			k := key{sm.TenantID, sm.DeviceID, sm.Metric}
			if i, ok := idx[k]; ok {
				if ts(sm.At).After(ts(out[i].At)) {
					out[i] = sm
				}
				continue
			}
			idx[k] = len(out)
			out = append(out, sm)
		}
		slices.SortFunc(out, func(a, b steward.Sample) int {
			return cmp.Or(strings.Compare(a.TenantID, b.TenantID), strings.Compare(a.DeviceID, b.DeviceID), strings.Compare(a.Metric, b.Metric))
		})
		return out
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		var in []steward.Sample
		for range 1 + r.IntN(2000) {
			metrics := 3
			if r.IntN(4) == 0 {
				metrics = 40 // past the linear search
			}
			in = append(in, steward.Sample{
				TenantID: fmt.Sprint("t", r.IntN(2)), DeviceID: fmt.Sprint("d", r.IntN(30)),
				Metric: fmt.Sprint("m", r.IntN(metrics)), Value: float64(r.IntN(1000)),
				At: t0.Add(time.Duration(r.IntN(5)) * time.Second)})
		}
		if got, want := latestOf(in), plain(in); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: latestOf differs from its definition:\n got %+v\nwant %+v", seed, got, want)
		}
	}
}

func TestReadingsOf(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := func(dev, metric string, v float64, at time.Time) steward.Sample {
		return steward.Sample{TenantID: "a", DeviceID: dev, Metric: metric, Value: v, At: at}
	}
	in := []steward.Sample{
		s("d1", "cpu", 0.5, t0),
		s("d2", "cpu", 1e21, t0),
		s("d1", "mem", -3, t0.Add(time.Nanosecond)), // the same microsecond: the same reading
		s("d1", "cpu", 9, t0),                       // given twice: the first stays
		s("d1", "cpu", 2, t0.Add(time.Second)),
		s("d1", `odd"name`, 1, t0.Add(time.Second)),
	}
	got := readingsOf(in)
	want := []struct {
		dev     string
		at      time.Time
		metrics string
	}{
		{"d1", t0, `{"cpu":0.5,"mem":-3}`},
		{"d2", t0, `{"cpu":1e+21}`},
		{"d1", t0.Add(time.Second), `{"cpu":2,"odd\"name":1}`},
	}
	if len(got) != len(want) {
		t.Fatalf("readingsOf gave %d readings, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if g := got[i]; g.deviceID != w.dev || !g.at.Equal(w.at) || string(g.metrics) != w.metrics {
			t.Errorf("reading %d: %s %s %s, want %s %s %s", i, g.deviceID, g.at, g.metrics, w.dev, w.at, w.metrics)
		}
	}
}

func TestLatestCodec(t *testing.T) {
	t.Parallel()
	m := deviceLatest{"cpu": {1764237600123456, 0.31}, "m.x-1": {1764237600000000, -1e20}, "odd\"name": {1, 5}}
	enc := encodeLatest(m)
	tests := []struct {
		name, in string
		want     deviceLatest
	}{
		{"as written", string(enc), m},
		{"as JSONB prints it", `{"cpu": [1764237600123456, 0.31], "m.x-1": [1764237600000000, -100000000000000000000]}`,
			deviceLatest{"cpu": {1764237600123456, 0.31}, "m.x-1": {1764237600000000, -1e20}}},
		{"empty", `{}`, deviceLatest{}},
		{"a time with a fraction (encoding/json)", `{"cpu":[1.5e3,2]}`, deviceLatest{"cpu": {1500, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeLatest([]byte(tc.in))
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decodeLatest(%s) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"cpu":[1,2}`, `{"cpu":[1]}`, `[1,2]`, `{"cpu":[1,2]} x`, `{"cpu":"x"}`} {
		if got, err := decodeLatest([]byte(bad)); err == nil {
			t.Errorf("decodeLatest(%q) = %v, want an error", bad, got)
		}
	}
}

func TestReadingMetrics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []metricValue
	}{
		{"as written", `{"cpu":0.31,"mem":-1e+20,"n":3}`, []metricValue{{"cpu", 0.31}, {"mem", -1e20}, {"n", 3}}},
		{"as JSONB prints it", `{"cpu": 0.31, "mem": -100000000000000000000}`, []metricValue{{"cpu", 0.31}, {"mem", -1e20}}},
		{"empty", `{}`, nil},
		// The scanner stops at the escape; encoding/json reads all of it,
		// and what the scanner had read is not counted twice.
		{"an escaped name", `{"a":1,"b\"c":2}`, []metricValue{{"a", 1}, {`b"c`, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readingMetrics([]byte(tc.in), []metricValue{{"kept", 9}})
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got[1:], func(a, b metricValue) int { return strings.Compare(a.name, b.name) })
			if want := append([]metricValue{{"kept", 9}}, tc.want...); !reflect.DeepEqual(got, want) {
				t.Fatalf("readingMetrics(%s) = %v, want %v", tc.in, got, want)
			}
		})
	}
	for _, bad := range []string{``, `{"cpu":}`, `{"cpu":"x"}`, `{"cpu":[1,2]}`, `{"cpu":1} x`} {
		if got, err := readingMetrics([]byte(bad), nil); err == nil {
			t.Errorf("readingMetrics(%q) = %v, want an error", bad, got)
		}
	}
}

func TestScanners(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)
	var got time.Time
	for _, src := range []any{t0.UnixMicro(), t0.In(time.FixedZone("x", 3600))} {
		if err := (timeCol{&got}).Scan(src); err != nil || !got.Equal(t0) || got.Location() != time.UTC {
			t.Fatalf("timeCol.Scan(%v) = %v, %v; want %v in UTC", src, got, err, t0)
		}
	}
	if err := (timeCol{&got}).Scan(nil); err != nil || !got.IsZero() {
		t.Fatalf("timeCol.Scan(nil) = %v, %v", got, err)
	}
	if err := (timeCol{&got}).Scan("2026-11-27"); err == nil {
		t.Fatal("timeCol.Scan took text")
	}
	ptr := &t0
	if err := (timePtrCol{&ptr}).Scan(nil); err != nil || ptr != nil {
		t.Fatalf("timePtrCol.Scan(nil) = %v, %v", ptr, err)
	}
	var m map[string]string
	for _, src := range []any{`{"a":"b"}`, []byte(`{"a":"b"}`)} {
		m = nil
		if err := (jsonCol{&m}).Scan(src); err != nil || m["a"] != "b" {
			t.Fatalf("jsonCol.Scan(%v) = %v, %v", src, m, err)
		}
	}
	if err := (jsonCol{&m}).Scan(`{"a":`); err == nil {
		t.Fatal("jsonCol.Scan took bad JSON")
	}
	if v, err := jsonText(map[string]string(nil), "{}"); err != nil || v != "{}" {
		t.Fatalf("jsonText(nil map) = %q, %v", v, err)
	}
	if nullTS(time.Time{}) != nil || nullTSPtr(nil) != nil {
		t.Fatal("a zero time is not NULL")
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	errUnique := errors.New("unique")
	errFK := errors.New("fk")
	errBusy := errors.New("busy")
	s := New(nil, nil, &Dialect{
		Name:                  "test",
		IsUniqueViolation:     func(err error) bool { return errors.Is(err, errUnique) },
		IsForeignKeyViolation: func(err error) bool { return errors.Is(err, errFK) },
		IsTransient:           func(err error) bool { return errors.Is(err, errBusy) },
	}, nil)
	tests := []struct {
		err  error
		code steward.Code
	}{
		{fmt.Errorf("insert: %w", errUnique), steward.CodeConflict},
		{errFK, steward.CodeNotFound},
		{errBusy, steward.CodeUnavailable},
		{context.DeadlineExceeded, steward.CodeUnavailable},
		{errors.New("disk on fire"), steward.CodeInternal},
		{steward.Errorf(steward.CodeInvalid, "bad"), steward.CodeInvalid},
	}
	for _, tc := range tests {
		err := s.fail(tc.err, "do %s", "things")
		if steward.ErrorCode(err) != tc.code || !errors.Is(err, tc.err) {
			t.Errorf("fail(%v) = %v (%s), want %s wrapping the cause", tc.err, err, steward.ErrorCode(err), tc.code)
		}
	}
	if s.fail(nil, "x") != nil {
		t.Error("fail(nil) is not nil")
	}
	// A dialect without classifiers classifies nothing.
	bare := New(nil, nil, &Dialect{Name: "bare"}, nil)
	if code := steward.ErrorCode(bare.fail(errUnique, "x")); code != steward.CodeInternal {
		t.Errorf("bare dialect: %s", code)
	}
}

// TestSnapGate: the move's wait returns once the readers that entered
// before it have left, and never holds up a reader that enters after it.
func TestSnapGate(t *testing.T) {
	t.Parallel()
	var g snapGate
	g.wait() // nobody inside
	first := g.enter()
	done := make(chan struct{})
	go func() {
		g.wait()
		close(done)
	}()
	for { // until wait has begun
		g.mu.Lock()
		begun := g.epoch > first
		g.mu.Unlock()
		if begun {
			break
		}
		runtime.Gosched()
	}
	later := g.enter() // would block for ever if wait shut readers out
	select {
	case <-done:
		t.Fatal("wait returned while a reader that entered before it was inside")
	case <-time.After(50 * time.Millisecond):
	}
	g.exit(first)
	select {
	case <-done:
	case <-t.Context().Done():
		t.Fatal("wait did not return once the earlier reader left")
	}
	g.exit(later)
	g.wait()
}
