package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
)

// now is the tests' time of day: on a whole minute plus some seconds.
var now = time.Date(2026, 11, 27, 12, 0, 30, 0, time.UTC)

// publish sends one telemetry payload through a running intake and
// returns its acknowledgement.
func publish(t *testing.T, bus *inproc.Bus, payload string) error {
	t.Helper()
	acked := make(chan error, 1)
	bus.PublishInbound(t.Context(), steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry, Payload: []byte(payload)},
		func(err error) { acked <- err })
	return <-acked
}

// startIntake runs an intake on st until the test ends.
func startIntake(t *testing.T, st steward.Store, clock steward.Clock, r *Rollup) (*Intake, *inproc.Bus) {
	t.Helper()
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: clock, Logger: slog.New(slog.DiscardHandler), Rollup: r}, bus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return in, bus
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// TestIntakeAcceptanceWindow checks that samples outside [now-7d,
// now+5m] are dropped and counted while the rest of their message is kept.
func TestIntakeAcceptanceWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		at   time.Time
		kept bool
	}{
		{"now", now, true},
		{"an hour late", now.Add(-time.Hour), true},
		{"at the oldest edge", now.Add(-DefaultMaxAge), true},
		{"just too old", now.Add(-DefaultMaxAge - time.Millisecond), false},
		{"a year old", now.AddDate(-1, 0, 0), false},
		{"at the future edge", now.Add(DefaultMaxAhead), true},
		{"just too far ahead", now.Add(DefaultMaxAhead + time.Millisecond), false},
		{"the Unix epoch", time.UnixMilli(0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := openStore(t)
			in, bus := startIntake(t, st, newClock(now), nil)
			// One good sample at now in every message, plus the one tested.
			payload := fmt.Sprintf(`[{"ts":%d,"metrics":{"ok":1}},{"ts":%d,"metrics":{"x":2,"y":3}}]`, ms(now), ms(tc.at))
			must(t, publish(t, bus, payload))
			latest, err := st.LatestSamples(t.Context(), "t1", "d-1")
			must(t, err)
			wantStored, wantDropped := 3, int64(0)
			if !tc.kept {
				wantStored, wantDropped = 1, 2
			}
			if len(latest) != wantStored || in.Dropped() != wantDropped {
				t.Fatalf("stored %d metrics %+v, dropped %d; want %d stored, %d dropped", len(latest), latest, in.Dropped(), wantStored, wantDropped)
			}
		})
	}
	t.Run("nothing left", func(t *testing.T) {
		t.Parallel()
		st := openStore(t)
		in, bus := startIntake(t, st, newClock(now), nil)
		// Acknowledged (the device must not send it again), nothing stored.
		must(t, publish(t, bus, fmt.Sprintf(`{"ts":%d,"metrics":{"x":1}}`, ms(now.AddDate(0, 0, -8)))))
		latest, err := st.LatestSamples(t.Context(), "t1", "d-1")
		must(t, err)
		if len(latest) != 0 || in.Dropped() != 1 {
			t.Fatalf("stored %+v, dropped %d", latest, in.Dropped())
		}
	})
}

// TestIntakeDropsDuplicates checks that a message sent twice (same device,
// metric and time) is stored once, and counted once by the rollups.
func TestIntakeDropsDuplicates(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	clock := newClock(now)
	r := NewRollup(RollupConfig{Store: st, Clock: clock})
	_, bus := startIntake(t, st, clock, r)
	at := now.Add(-10 * time.Minute)
	must(t, publish(t, bus, fmt.Sprintf(`{"ts":%d,"metrics":{"cpu":0.5}}`, ms(at))))
	must(t, publish(t, bus, fmt.Sprintf(`{"ts":%d,"metrics":{"cpu":0.9}}`, ms(at))))
	got, err := st.ListSamples(t.Context(), "t1", "d-1", "cpu", at.Add(-time.Hour), time.Time{}, 0)
	must(t, err)
	if len(got) != 1 || got[0].Value != 0.5 {
		t.Fatalf("samples %+v, want the first one only", got)
	}
	must(t, r.RunOnce(t.Context()))
	ru, err := st.ListRollups(t.Context(), "t1", "d-1", "cpu", steward.RollupMinute, at.Add(-time.Hour), time.Time{}, 0)
	must(t, err)
	if len(ru) != 1 || ru[0].Count != 1 || ru[0].Sum != 0.5 {
		t.Fatalf("rollups %+v, want one sample", ru)
	}
}

// rollupAt returns the one rollup of d-1's metric in the bucket at.
func rollupAt(t *testing.T, st steward.Store, metric string, res time.Duration, at time.Time) steward.Rollup {
	t.Helper()
	got, err := st.ListRollups(t.Context(), "t1", "d-1", metric, res, at, at.Add(res), 0)
	must(t, err)
	if len(got) != 1 {
		t.Fatalf("%s rollups of %s at %v: %+v, want one", res, metric, at, got)
	}
	return got[0]
}

func write(t *testing.T, st steward.Store, metric string, v float64, at time.Time) {
	t.Helper()
	must(t, st.WriteSamples(t.Context(), []steward.Sample{{TenantID: "t1", DeviceID: "d-1", Metric: metric, Value: v, At: at}}))
}

// TestRollupJob follows the job through its cases: closed minutes since
// the watermark, the open minute left alone, a late sample noted by the
// intake, a late sample a crashed node never noted (found by the sweep of
// a new job), and two jobs at once.
func TestRollupJob(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			st := b.open(t)
			c := t.Context()
			clock := newClock(now)
			r := NewRollup(RollupConfig{Store: st, Clock: clock})
			minute := now.Truncate(time.Minute) // 12:00, open
			write(t, st, "cpu", 1, minute.Add(-2*time.Minute))
			write(t, st, "cpu", 3, minute.Add(-2*time.Minute+time.Second))
			write(t, st, "cpu", 5, minute.Add(time.Second)) // the open minute
			must(t, r.RunOnce(c))
			wm, err := st.RollupWatermark(c)
			must(t, err)
			if !wm.Equal(minute) {
				t.Fatalf("watermark %v, want %v", wm, minute)
			}
			if got := rollupAt(t, st, "cpu", steward.RollupMinute, minute.Add(-2*time.Minute)); got.Count != 2 || got.Min != 1 || got.Max != 3 || got.Avg() != 2 {
				t.Fatalf("minute 11:58 = %+v", got)
			}
			open, err := st.ListRollups(c, "t1", "d-1", "cpu", steward.RollupMinute, minute, time.Time{}, 0)
			must(t, err)
			if len(open) != 0 {
				t.Fatalf("the open minute was rolled up: %+v", open)
			}

			// A minute later: 12:00 is closed; a late sample from two
			// days ago arrives through the intake, which notes it.
			clock.Set(now.Add(time.Minute))
			late := now.Add(-48 * time.Hour).Truncate(time.Minute)
			write(t, st, "cpu", 7, late.Add(time.Second))
			must(t, r.RunOnce(c))
			if got := rollupAt(t, st, "cpu", steward.RollupMinute, minute); got.Count != 1 || got.Sum != 5 {
				t.Fatalf("minute 12:00 = %+v", got)
			}
			// Not noted (written behind the job's back): no new bucket yet.
			if got, err := st.ListRollups(c, "t1", "d-1", "cpu", steward.RollupMinute, late, late.Add(time.Minute), 0); err != nil || len(got) != 0 {
				t.Fatalf("late minute without a note: %+v, %v", got, err)
			}
			write(t, st, "cpu", 9, late.Add(2*time.Second))
			r.Note(late.Add(2 * time.Second))
			must(t, r.RunOnce(c))
			if got := rollupAt(t, st, "cpu", steward.RollupMinute, late); got.Count != 2 || got.Sum != 16 {
				t.Fatalf("late minute = %+v, want both samples", got)
			}
			if got := rollupAt(t, st, "cpu", steward.RollupHour, late.Truncate(time.Hour)); got.Count != 2 || got.Max != 9 {
				t.Fatalf("late hour = %+v", got)
			}

			// A sample a crashed node wrote and never rolled up: a new
			// job (the node restarted) sweeps the window and finds it.
			older := now.Add(-6 * 24 * time.Hour).Truncate(time.Minute)
			write(t, st, "mem", 42, older)
			must(t, r.RunOnce(c)) // the old job: no note, no sweep due
			if got, _ := st.ListRollups(c, "t1", "d-1", "mem", steward.RollupMinute, older, time.Time{}, 0); len(got) != 0 {
				t.Fatalf("rolled up without a note or sweep: %+v", got)
			}
			r2 := NewRollup(RollupConfig{Store: st, Clock: clock, Chunk: 6 * time.Hour})
			must(t, r2.RunOnce(c))
			if got := rollupAt(t, st, "mem", steward.RollupMinute, older); got.Count != 1 || got.Sum != 42 {
				t.Fatalf("swept minute = %+v", got)
			}

			// Two jobs at once on the same store, then everything again:
			// the rows do not change.
			clock.Set(now.Add(5 * time.Minute))
			write(t, st, "cpu", 11, now.Add(3*time.Minute))
			errs := make(chan error, 2)
			for _, j := range []*Rollup{NewRollup(RollupConfig{Store: st, Clock: clock}), NewRollup(RollupConfig{Store: st, Clock: clock})} {
				go func() { errs <- j.RunOnce(c) }()
			}
			must(t, <-errs)
			must(t, <-errs)
			before, err := st.ListRollups(c, "t1", "d-1", "cpu", steward.RollupMinute, late, time.Time{}, 0)
			must(t, err)
			must(t, NewRollup(RollupConfig{Store: st, Clock: clock}).RunOnce(c))
			after, err := st.ListRollups(c, "t1", "d-1", "cpu", steward.RollupMinute, late, time.Time{}, 0)
			must(t, err)
			if fmt.Sprint(before) != fmt.Sprint(after) || len(after) != 4 {
				t.Fatalf("rollups changed on a second run or are wrong:\n%+v\n%+v", before, after)
			}
		})
	}
}

// TestRetentionJob checks that the job deletes exactly what is past its
// period, and keeps raw samples that are not rolled up yet.
func TestRetentionJob(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			st := b.open(t)
			c := t.Context()
			clock := newClock(now)
			day := 24 * time.Hour
			// Samples 1 to 500 days old, every 12 hours, and their rollups.
			// To get rollups that old, roll them up as if at their time.
			ages := []time.Duration{}
			for a := 12 * time.Hour; a <= 500*day; a += 12 * time.Hour {
				ages = append(ages, a)
				write(t, st, "cpu", float64(a/time.Hour), now.Add(-a))
			}
			must(t, st.RollupSamples(c, now.Add(-501*day).Truncate(time.Hour), now.Truncate(time.Minute)))

			j := NewRetention(RetentionConfig{Store: st, Clock: clock, Chunk: 7})
			p, err := j.RunOnce(c)
			must(t, err)
			wm, err := st.RollupWatermark(c)
			must(t, err)
			rawCut, minuteCut, hourCut, dayCut := j.Cutoffs(now, wm)
			// The defaults: 7 days (plus the slack), 30 days, 400 days.
			if !rawCut.Equal(now.Add(-7*day).Truncate(time.Minute).Add(-pruneSlack)) || !minuteCut.Equal(now.Add(-30*day)) || !hourCut.Equal(now.Add(-400*day)) {
				t.Fatalf("cutoffs %v %v %v", rawCut, minuteCut, hourCut)
			}
			if !dayCut.Equal(now.Add(-5 * 365 * day)) {
				t.Fatalf("day cutoff %v, want 5 years back", dayCut)
			}
			var wantRaw, wantMin, wantHour int
			for _, a := range ages {
				at := now.Add(-a)
				if at.Before(rawCut) {
					wantRaw++
				}
				if at.Truncate(time.Minute).Before(minuteCut) {
					wantMin++
				}
				if at.Truncate(time.Hour).Before(hourCut) {
					wantHour++
				}
			}
			if p != (Pruned{Samples: wantRaw, Minutes: wantMin, Hours: wantHour}) {
				t.Fatalf("pruned %+v, want %d samples, %d minutes, %d hours", p, wantRaw, wantMin, wantHour)
			}
			count := func(res time.Duration) (n int, oldest time.Time) {
				var got []steward.Rollup
				if res == 0 {
					s, err := st.ListSamples(c, "t1", "d-1", "cpu", time.Time{}, time.Time{}, 10000)
					must(t, err)
					if len(s) > 0 {
						oldest = s[0].At
					}
					return len(s), oldest
				}
				got, err := st.ListRollups(c, "t1", "d-1", "cpu", res, time.Time{}, time.Time{}, 10000)
				must(t, err)
				if len(got) > 0 {
					oldest = got[0].At
				}
				return len(got), oldest
			}
			for _, k := range []struct {
				res  time.Duration
				want int
				cut  time.Time
			}{{0, len(ages) - wantRaw, rawCut}, {steward.RollupMinute, len(ages) - wantMin, minuteCut}, {steward.RollupHour, len(ages) - wantHour, hourCut}} {
				n, oldest := count(k.res)
				if n != k.want || oldest.Before(k.cut) {
					t.Fatalf("by %v: %d left, oldest %v; want %d, none before %v", k.res, n, oldest, k.want, k.cut)
				}
			}
			// Again: nothing more.
			if p, err := j.RunOnce(c); err != nil || p != (Pruned{}) {
				t.Fatalf("second run pruned %+v, %v", p, err)
			}
		})
	}
	t.Run("keeps what is not rolled up", func(t *testing.T) {
		t.Parallel()
		st := openStore(t)
		write(t, st, "cpu", 1, now.Add(-100*24*time.Hour))
		j := NewRetention(RetentionConfig{Store: st, Clock: newClock(now)})
		p, err := j.RunOnce(t.Context())
		must(t, err)
		got, err := st.ListSamples(t.Context(), "t1", "d-1", "cpu", time.Time{}, time.Time{}, 0)
		must(t, err)
		if p.Samples != 0 || len(got) != 1 {
			t.Fatalf("pruned %+v; %d samples left, want the one never rolled up", p, len(got))
		}
	})
	t.Run("raw kept for the late window", func(t *testing.T) {
		t.Parallel()
		j := NewRetention(RetentionConfig{Policy: Policy{Raw: time.Hour, Minute: time.Hour, Hour: time.Hour}})
		raw, minute, hour, _ := j.Cutoffs(now, now)
		if !raw.Before(now.Add(-DefaultMaxAge)) || !minute.Before(now.Add(-DefaultMaxAge-time.Hour)) || !hour.Before(now.Add(-DefaultMaxAge-24*time.Hour)) {
			t.Fatalf("cutoffs %v, %v, %v inside the late window", raw, minute, hour)
		}
	})
}
