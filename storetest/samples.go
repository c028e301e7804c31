package storetest

import (
	"database/sql"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// sample returns a sample of tenant A's device d-1.
func sample(metric string, v float64, when time.Time) steward.Sample {
	return steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: metric, Value: v, At: when}
}

// storedSamples is how a store hands samples back.
func storedSamples(in ...steward.Sample) []steward.Sample {
	out := []steward.Sample{}
	for _, sm := range in {
		sm.At = stored(sm.At)
		out = append(out, sm)
	}
	return out
}

func sameSamples(t *testing.T, what string, got, want []steward.Sample) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testSamples(t *testing.T, s steward.Store) {
	c := ctx(t)
	batch := []steward.Sample{
		sample("cpu", 0.31, at(2*time.Second)),
		sample("cpu", 0.25, t0),
		sample("temperature", 48.5, t0),
		sample("cpu", 0.5, at(time.Second)),
		sample("cpu", -1e-300, at(3*time.Second)),
		{TenantID: tenantB, DeviceID: "d-9", Metric: "cpu", Value: 1, At: t0}, // a batch spans tenants
	}
	must(t, s.WriteSamples(c, batch))
	must(t, s.WriteSamples(c, nil))

	got, err := s.ListSamples(c, tenantA, "d-1", "cpu", t0, at(time.Hour), 0)
	must(t, err)
	sameSamples(t, "cpu samples", got, storedSamples(batch[1], batch[3], batch[0], batch[4]))

	// [from, to): from is in, to is out.
	got, err = s.ListSamples(c, tenantA, "d-1", "cpu", at(time.Second), at(3*time.Second), 0)
	must(t, err)
	sameSamples(t, "cpu in [t0+1s, t0+3s)", got, storedSamples(batch[3], batch[0]))
	got, err = s.ListSamples(c, tenantA, "d-1", "cpu", t0, at(time.Hour), 2)
	must(t, err)
	sameSamples(t, "first two", got, storedSamples(batch[1], batch[3]))
	got, err = s.ListSamples(c, tenantA, "d-1", "cpu", at(time.Second), time.Time{}, 0)
	must(t, err)
	if len(got) != 3 {
		t.Fatalf("no upper bound: %+v", got)
	}
	_, err = s.ListSamples(c, tenantA, "d-1", "cpu", t0, at(time.Hour), -1)
	wantCode(t, err, steward.CodeInvalid)

	latest, err := s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	sameSamples(t, "latest", latest, storedSamples(batch[4], batch[2]))

	// A batch written again (a redelivery) changes nothing.
	again := []steward.Sample{sample("cpu", 99, at(3*time.Second)), sample("cpu", 0.31, at(2*time.Second))}
	must(t, s.WriteSamples(c, again))
	got, err = s.ListSamples(c, tenantA, "d-1", "cpu", t0, at(time.Hour), 0)
	must(t, err)
	sameSamples(t, "after a redelivery", got, storedSamples(batch[1], batch[3], batch[0], batch[4]))
	latest, err = s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	sameSamples(t, "latest after a redelivery", latest, storedSamples(batch[4], batch[2]))
}

func testSamplesLatest(t *testing.T, s steward.Store) {
	c := ctx(t)
	must(t, s.WriteSamples(c, []steward.Sample{sample("cpu", 0.9, at(time.Minute)), sample("mem", 100, t0)}))

	// An older sample arriving later (a device catching up after an
	// outage) does not replace the newer latest value; a newer one does.
	must(t, s.WriteSamples(c, []steward.Sample{sample("cpu", 0.1, t0), sample("mem", 200, at(time.Hour))}))
	latest, err := s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	sameSamples(t, "latest", latest, storedSamples(sample("cpu", 0.9, at(time.Minute)), sample("mem", 200, at(time.Hour))))

	// Within one batch, the newest wins whatever the order.
	must(t, s.WriteSamples(c, []steward.Sample{
		sample("disk", 3, at(3*time.Minute)), sample("disk", 5, at(5*time.Minute)), sample("disk", 4, at(4*time.Minute)),
	}))
	latest, err = s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	if len(latest) != 3 || latest[1].Metric != "disk" || latest[1].Value != 5 {
		t.Fatalf("latest after an unordered batch = %+v, want disk = 5", latest)
	}
	none, err := s.LatestSamples(c, tenantA, "d-none")
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("latest of an unknown device = %+v", none)
	}
}

// testSamplesLatestAfterErasure erases a device's data, then writes a new
// sample: its latest values are that sample alone, none of the erased ones
// (a store that keeps the rows it wrote in memory must forget them too), and
// the other device keeps its own.
func testSamplesLatestAfterErasure(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	other := steward.Sample{TenantID: tenantA, DeviceID: "d-2", Metric: "cpu", Value: 9, At: t0}
	must(t, s.WriteSamples(c, []steward.Sample{sample("cpu", 0.5, t0), sample("temp", 40, t0), other}))
	n, err := s.EraseDeviceData(c, tenantA, "d-1")
	must(t, err)
	if n == 0 {
		t.Fatal("erasing the device's data deleted nothing")
	}
	must(t, s.WriteSamples(c, []steward.Sample{sample("mem", 7, at(time.Second))}))
	latest, err := s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	sameSamples(t, "latest after the erasure", latest, storedSamples(sample("mem", 7, at(time.Second))))
	latest, err = s.LatestSamples(c, tenantA, "d-2")
	must(t, err)
	sameSamples(t, "the other device's latest", latest, storedSamples(other))
}

// testSamplesLatestUnreadable damages a device's stored latest values (as
// a hand edit could): the next batch naming the device is written all the
// same, and the row is rewritten, since it is derived from samples.
func testSamplesLatestUnreadable(t *testing.T, s steward.Store) {
	c := ctx(t)
	must(t, s.WriteSamples(c, []steward.Sample{sample("cpu", 0.5, t0)}))
	db, ok := s.(interface{ TelemetryDB() *sql.DB })
	if !ok {
		t.Skip("the store gives no database handle to damage a row with")
	}
	_, err := db.TelemetryDB().ExecContext(c, `UPDATE metric_latest SET metrics = '{"cpu": "x"}' WHERE device_id = 'd-1'`)
	must(t, err)
	if _, err := s.LatestSamples(c, tenantA, "d-1"); err == nil {
		t.Fatal("an unreadable row of latest values read without an error")
	}
	must(t, s.WriteSamples(c, []steward.Sample{sample("mem", 7, at(time.Second))}))
	latest, err := s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	// A store that keeps what it last wrote (SQLite, whose one writer
	// caches the rows) restores cpu too; one that reads the row back
	// starts again from the batch. Either is right; nothing else is.
	want := storedSamples(sample("mem", 7, at(time.Second)))
	if len(latest) == 2 {
		want = storedSamples(sample("cpu", 0.5, t0), sample("mem", 7, at(time.Second)))
	}
	sameSamples(t, "latest after the damaged row", latest, want)
	got, err := s.ListSamples(c, tenantA, "d-1", "cpu", t0, time.Time{}, 0)
	must(t, err)
	sameSamples(t, "the samples themselves", got, storedSamples(sample("cpu", 0.5, t0)))
}

// testSamplesLatestConcurrent writes batches for the same devices, new to
// the store, at once (on PostgreSQL, from several connections, so that
// their reads of the devices' latest values and inserts of new devices
// race): every metric of every batch is in the latest values, and of one
// metric every batch wrote, the newest.
func testSamplesLatestConcurrent(t *testing.T, s steward.Store) {
	c := ctx(t)
	const writers, devices = 6, 8
	batch := func(w int) []steward.Sample {
		var b []steward.Sample
		for d := range devices {
			dev := fmt.Sprintf("d-c%d", d)
			when := at(time.Duration(w) * time.Second)
			b = append(b,
				steward.Sample{TenantID: tenantA, DeviceID: dev, Metric: fmt.Sprintf("m%d", w), Value: float64(w), At: when},
				steward.Sample{TenantID: tenantA, DeviceID: dev, Metric: "cpu", Value: float64(w), At: when})
		}
		return b
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	// The first writer inserts the devices and holds its transaction open
	// while the others start, so that (on PostgreSQL) they find no row,
	// wait on its inserts and must read and merge again.
	written := make(chan struct{})
	wg.Go(func() {
		errs[0] = s.InTx(c, func(tx steward.Store) error {
			if err := tx.WriteSamples(c, batch(0)); err != nil {
				close(written)
				return err
			}
			close(written)
			time.Sleep(300 * time.Millisecond)
			return nil
		})
	})
	<-written
	for w := 1; w < writers; w++ {
		wg.Go(func() { errs[w] = s.WriteSamples(c, batch(w)) })
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	for d := range devices {
		latest, err := s.LatestSamples(c, tenantA, fmt.Sprintf("d-c%d", d))
		must(t, err)
		if len(latest) != writers+1 {
			t.Fatalf("device d-c%d: %d latest values, want %d: %+v", d, len(latest), writers+1, latest)
		}
		for _, l := range latest {
			want := float64(writers - 1)
			if l.Metric != "cpu" {
				_, _ = fmt.Sscanf(l.Metric, "m%g", &want)
			}
			if l.Value != want || !l.At.Equal(stored(at(time.Duration(want)*time.Second))) {
				t.Fatalf("device d-c%d: latest %s = %v at %s, want %v", d, l.Metric, l.Value, l.At, want)
			}
		}
	}
}

func testSamplesInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	good := sample("cpu", 1, t0)
	tests := []struct {
		name string
		bad  steward.Sample
	}{
		{"NaN", sample("cpu", math.NaN(), at(time.Second))},
		{"infinity", sample("cpu", math.Inf(-1), at(time.Second))},
		{"no metric", sample("", 1, at(time.Second))},
		{"no device", steward.Sample{TenantID: tenantA, Metric: "cpu", Value: 1, At: t0}},
		{"no time", sample("cpu", 1, time.Time{})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The whole batch is refused, the good sample with it.
			wantCode(t, s.WriteSamples(c, []steward.Sample{good, tc.bad}), steward.CodeInvalid)
			got, err := s.ListSamples(c, tenantA, "d-1", "cpu", t0.Add(-time.Hour), at(time.Hour), 0)
			must(t, err)
			latest, err := s.LatestSamples(c, tenantA, "d-1")
			must(t, err)
			if len(got) != 0 || len(latest) != 0 {
				t.Fatalf("a refused batch was written: %+v, latest %+v", got, latest)
			}
		})
	}
}

func testSamplesIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	must(t, s.WriteSamples(c, []steward.Sample{sample("cpu", 1, t0)}))
	got, err := s.ListSamples(c, tenantB, "d-1", "cpu", t0.Add(-time.Hour), at(time.Hour), 0)
	must(t, err)
	latest, err := s.LatestSamples(c, tenantB, "d-1")
	must(t, err)
	if len(got) != 0 || len(latest) != 0 {
		t.Fatalf("tenant B reads tenant A's samples: %+v, latest %+v", got, latest)
	}
}

func testSamplesLargeBatch(t *testing.T, s steward.Store) {
	c := ctx(t)
	// More rows than one INSERT carries, and not a multiple of it; several
	// devices and metrics, each metric's newest sample in the middle.
	var batch []steward.Sample
	for i := range 2345 {
		batch = append(batch, steward.Sample{
			TenantID: tenantA, DeviceID: did("s", i%7), Metric: []string{"cpu", "mem", "temp"}[i%3],
			Value: float64(i), At: at(time.Duration(i%1000) * time.Millisecond),
		})
	}
	must(t, s.WriteSamples(c, batch))
	total := 0
	for d := range 7 {
		for _, m := range []string{"cpu", "mem", "temp"} {
			got, err := s.ListSamples(c, tenantA, did("s", d), m, t0, at(time.Hour), 0)
			must(t, err)
			total += len(got)
			for i := 1; i < len(got); i++ {
				if !got[i].At.After(got[i-1].At) {
					t.Fatalf("samples out of order: %+v then %+v", got[i-1], got[i])
				}
			}
		}
		latest, err := s.LatestSamples(c, tenantA, did("s", d))
		must(t, err)
		for _, l := range latest {
			var want steward.Sample
			for _, sm := range batch {
				if sm.DeviceID == l.DeviceID && sm.Metric == l.Metric && (want.At.IsZero() || sm.At.After(want.At)) {
					want = sm
				}
			}
			want.At = stored(want.At)
			if l != want {
				t.Fatalf("latest %+v, want %+v", l, want)
			}
		}
		if len(latest) != 3 {
			t.Fatalf("device %d has %d latest metrics, want 3", d, len(latest))
		}
	}
	// Every (device, metric, time) of the batch is distinct except where
	// i%1000 repeats a time: those are the same sample key, kept once.
	want := map[[3]string]bool{}
	for _, sm := range batch {
		want[[3]string{sm.DeviceID, sm.Metric, sm.At.String()}] = true
	}
	if total != len(want) {
		t.Fatalf("%d samples stored, want %d", total, len(want))
	}
}
