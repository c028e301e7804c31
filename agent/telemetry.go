package agent

import (
	"context"
	"encoding/json"
	"math"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Batch limits of one telemetry message; the server takes at most 1000
// samples (metric values) in one.
const (
	maxPointsPerMessage  = 60
	maxMetricsPerMessage = 1000
)

// point is one telemetry sample on the wire.
type point struct {
	TS      string             `json:"ts"`
	Metrics map[string]float64 `json:"metrics"`
	seq     uint64             // order in the buffer
}

// telemetryBuffer holds samples until the broker has acknowledged them, so
// that an outage costs no data up to its capacity.
type telemetryBuffer struct {
	mu      sync.Mutex
	max     int
	points  []point
	nextSeq uint64
}

// add appends p and returns how many old samples made room for it.
func (b *telemetryBuffer) add(p point) (dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextSeq++
	p.seq = b.nextSeq
	b.points = append(b.points, p)
	if over := len(b.points) - b.max; over > 0 {
		b.points = append(b.points[:0], b.points[over:]...)
		return over
	}
	return 0
}

// batch returns the oldest samples that fit in one message.
func (b *telemetryBuffer) batch() []point {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, metrics := 0, 0
	for n < len(b.points) && n < maxPointsPerMessage {
		m := len(b.points[n].Metrics)
		if n > 0 && metrics+m > maxMetricsPerMessage {
			break
		}
		metrics += m
		n++
	}
	return append([]point(nil), b.points[:n]...)
}

// remove drops the samples of an acknowledged batch. Samples may have
// been dropped for room meanwhile, so it goes by sequence, not by count.
func (b *telemetryBuffer) remove(sent []point) {
	if len(sent) == 0 {
		return
	}
	last := sent[len(sent)-1].seq
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(b.points) && b.points[i].seq <= last {
		i++
	}
	b.points = append(b.points[:0], b.points[i:]...)
}

func (b *telemetryBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.points)
}

// encodeBatch is one object for one sample and an array for more.
func encodeBatch(ps []point) ([]byte, error) {
	if len(ps) == 1 {
		return json.Marshal(ps[0])
	}
	return json.Marshal(ps)
}

// telemetryLoop samples every TelemetryInterval and sends what is
// buffered whenever there is a connection.
func (a *Agent) telemetryLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.TelemetryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.sample()
		case <-a.flush:
		}
		a.sendTelemetry(ctx)
	}
}

// sample takes one sample into the buffer. Non-finite values are left out:
// the server refuses a message that holds one. A quarantined device takes
// none: the server does not trust them, and sending them after the release
// would pass them off as trusted.
func (a *Agent) sample() {
	if a.restricted() {
		return
	}
	metrics := map[string]float64{}
	for k, v := range a.cfg.Telemetry() {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			metrics[k] = v
		}
	}
	if len(metrics) == 0 {
		return
	}
	p := point{TS: a.cfg.Clock.Now().UTC().Format(time.RFC3339), Metrics: metrics}
	if n := a.tele.add(p); n > 0 {
		a.telemetryDropped.Add(int64(n))
	}
}

// sendTelemetry sends buffered samples until the buffer is empty or a
// publish fails; what failed stays for the next connection.
func (a *Agent) sendTelemetry(ctx context.Context) {
	if a.restricted() {
		// Quarantined: the broker refuses telemetry (a 3.1.1 broker may
		// close the connection for it). What was taken before stays for
		// after the release.
		return
	}
	for {
		batch := a.tele.batch()
		if len(batch) == 0 {
			return
		}
		body, err := encodeBatch(batch)
		if err != nil {
			a.log.Error("encode telemetry", "err", err)
			return
		}
		if err := a.publish(ctx, steward.ChannelTelemetry, body); err != nil {
			if err != errNotConnected {
				a.log.Debug("telemetry not sent; kept for later", "err", err, "pending", a.tele.len())
			}
			return
		}
		a.tele.remove(batch)
		a.telemetrySent.Add(int64(len(batch)))
	}
}
