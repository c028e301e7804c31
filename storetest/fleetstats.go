package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// testFleetAggregates checks the per-device sums of fleet analytics: the
// scope query, the range bounds, the metric and the event type, and that
// another tenant's devices, samples and events never count.
func testFleetAggregates(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	mk := func(tenant, id, firmware string, online bool, labels map[string]string) steward.Device {
		d := device(tenant, id)
		d.Firmware, d.Labels, d.Presence.Online = firmware, labels, online
		return d
	}
	quarantined := func(d steward.Device) steward.Device { d.State = steward.StateQuarantined; return d }
	createDevices(t, s,
		mk(tenantA, "d-agg1", "1.0.0", true, map[string]string{"ring": "beta"}),
		mk(tenantA, "d-agg2", "1.0.0", false, nil),
		quarantined(mk(tenantA, "d-agg3", "2.0.0", true, map[string]string{"ring": "beta"})),
		mk(tenantB, "d-aggb", "1.0.0", true, nil),
	)
	from, to := at(0), at(24*time.Hour)
	var samples []steward.Sample
	sample := func(tenant, id, metric string, off time.Duration, v float64) {
		samples = append(samples, steward.Sample{TenantID: tenant, DeviceID: id, Metric: metric, At: from.Add(off), Value: v})
	}
	sample(tenantA, "d-agg1", "cpu", 0, 10) // the first instant is in
	sample(tenantA, "d-agg1", "cpu", time.Hour, 20)
	sample(tenantA, "d-agg1", "cpu", 24*time.Hour, 1000) // to is out
	sample(tenantA, "d-agg1", "cpu", -time.Second, 1000) // before from
	sample(tenantA, "d-agg1", "mem", time.Hour, 1000)    // another metric
	sample(tenantA, "d-agg3", "cpu", time.Minute, 50)
	sample(tenantB, "d-aggb", "cpu", time.Minute, 1000)
	must(t, s.WriteSamples(c, samples))
	var evs []steward.DeviceEvent
	event := func(tenant, id, typ string, off time.Duration) {
		when := from.Add(off)
		evs = append(evs, steward.DeviceEvent{TenantID: tenant, DeviceID: id, Type: typ, Severity: steward.SeverityWarning, At: when, Received: when})
	}
	for i := range 3 {
		event(tenantA, "d-agg2", "reboot", time.Duration(i)*time.Hour)
	}
	event(tenantA, "d-agg2", "reboot", 24*time.Hour)
	event(tenantA, "d-agg2", "crash", time.Hour)
	event(tenantA, "d-agg3", "reboot", 0)
	event(tenantB, "d-aggb", "reboot", time.Hour)
	must(t, s.AddDeviceEvents(c, evs))

	show := func(aggs []steward.DeviceAggregate) string {
		out := ""
		for _, a := range aggs {
			out += fmt.Sprintf("%s %s %s %v %s n=%d mean=%g ev=%d; ", a.DeviceID, a.Firmware, a.State, a.Online, a.Labels["ring"], a.Samples, a.Mean, a.Events)
		}
		return out
	}
	q := steward.FleetStatsQuery{Metric: "cpu", Event: "reboot", From: from, To: to}
	tests := []struct {
		name string
		q    func(q steward.FleetStatsQuery) steward.FleetStatsQuery
		want string
	}{
		{"all", func(q steward.FleetStatsQuery) steward.FleetStatsQuery { return q },
			"d-agg1 1.0.0 provisioned true beta n=2 mean=15 ev=0; d-agg2 1.0.0 provisioned false  n=0 mean=0 ev=3; d-agg3 2.0.0 quarantined true beta n=1 mean=50 ev=1; "},
		{"scope", func(q steward.FleetStatsQuery) steward.FleetStatsQuery {
			q.Query = `firmware < 2.0.0 AND labels.ring = beta`
			return q
		},
			"d-agg1 1.0.0 provisioned true beta n=2 mean=15 ev=0; "},
		{"no metric, other event", func(q steward.FleetStatsQuery) steward.FleetStatsQuery { q.Metric, q.Event = "", "crash"; return q },
			"d-agg1 1.0.0 provisioned true beta n=0 mean=0 ev=0; d-agg2 1.0.0 provisioned false  n=0 mean=0 ev=1; d-agg3 2.0.0 quarantined true beta n=0 mean=0 ev=0; "},
		{"no event, unknown metric", func(q steward.FleetStatsQuery) steward.FleetStatsQuery { q.Metric, q.Event = "none", ""; return q },
			"d-agg1 1.0.0 provisioned true beta n=0 mean=0 ev=0; d-agg2 1.0.0 provisioned false  n=0 mean=0 ev=0; d-agg3 2.0.0 quarantined true beta n=0 mean=0 ev=0; "},
		{"range", func(q steward.FleetStatsQuery) steward.FleetStatsQuery {
			q.From, q.To = from.Add(time.Minute), from.Add(2*time.Hour)
			return q
		},
			"d-agg1 1.0.0 provisioned true beta n=1 mean=20 ev=0; d-agg2 1.0.0 provisioned false  n=0 mean=0 ev=1; d-agg3 2.0.0 quarantined true beta n=1 mean=50 ev=0; "},
		{"empty scope", func(q steward.FleetStatsQuery) steward.FleetStatsQuery { q.Query = `model = none`; return q }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.FleetAggregates(c, tenantA, tt.q(q))
			must(t, err)
			if show(got) != tt.want {
				t.Fatalf("aggregates\n got %s\nwant %s", show(got), tt.want)
			}
		})
	}

	// Tenant B sees its own device only, with its own samples and events.
	got, err := s.FleetAggregates(c, tenantB, q)
	must(t, err)
	if want := "d-aggb 1.0.0 provisioned true  n=1 mean=1000 ev=1; "; show(got) != want {
		t.Fatalf("tenant B aggregates %s, want %s", show(got), want)
	}
	got, err = s.FleetAggregates(c, "tenant-none", q)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("an unknown tenant sees %s", show(got))
	}

	bad := map[string]steward.FleetStatsQuery{
		"bad query":     {Query: `firmware = `, From: from, To: to},
		"unknown field": {Query: `colour = red`, From: from, To: to},
		"no range":      {},
		"empty range":   {From: from, To: from},
		"bad event":     {Event: "a/b", From: from, To: to},
	}
	for name, bq := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := s.FleetAggregates(c, tenantA, bq)
			wantCode(t, err, steward.CodeInvalid)
		})
	}
	_, err = s.FleetAggregates(c, "", q)
	wantCode(t, err, steward.CodeInvalid)
}

// BenchmarkFleetAggregates measures FleetAggregates, the query behind fleet
// analytics: 1000 devices in 5 firmware cohorts, each with a day of hourly
// samples of a metric (and of another metric, which must not be read) and a
// few events, aggregated over the whole day. It reports devices/s.
func BenchmarkFleetAggregates(b *testing.B, open func(b *testing.B) steward.Store) {
	s := open(b)
	c := b.Context()
	if err := s.CreateTenant(c, steward.Tenant{ID: tenantA, Name: "A", CreatedAt: t0}); err != nil {
		b.Fatal(err)
	}
	const devices = 1000
	var samples []steward.Sample
	var evs []steward.DeviceEvent
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(s.InTx(c, func(tx steward.Store) error {
		for i := range devices {
			d := device(tenantA, fmt.Sprintf("d-bench%05d", i))
			d.FactoryID = ""
			d.Firmware = fmt.Sprintf("1.%d.0", i%5)
			if err := tx.CreateDevice(c, d); err != nil {
				return err
			}
			for h := range 24 {
				at := t0.Add(time.Duration(h) * time.Hour)
				samples = append(samples,
					steward.Sample{TenantID: tenantA, DeviceID: d.ID, Metric: "cpu", At: at, Value: float64(i%100 + h)},
					steward.Sample{TenantID: tenantA, DeviceID: d.ID, Metric: "mem", At: at, Value: 1})
			}
			for k := range i % 4 {
				at := t0.Add(time.Duration(k) * time.Hour)
				evs = append(evs, steward.DeviceEvent{TenantID: tenantA, DeviceID: d.ID, Type: "reboot", Severity: steward.SeverityWarning, At: at, Received: at})
			}
		}
		return nil
	}))
	must(s.WriteSamples(c, samples))
	must(s.AddDeviceEvents(c, evs))
	q := steward.FleetStatsQuery{Metric: "cpu", Event: "reboot", From: t0, To: t0.Add(24 * time.Hour)}
	n := 0
	for b.Loop() {
		aggs, err := s.FleetAggregates(c, tenantA, q)
		must(err)
		if len(aggs) != devices {
			b.Fatalf("%d aggregates, want %d", len(aggs), devices)
		}
		n += len(aggs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "devices/s")
}
