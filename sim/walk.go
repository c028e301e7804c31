package sim

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// walk is a device's synthetic telemetry: values that wander like a real
// device's (bounded random walks) rather than noise.
type walk struct {
	mu                      sync.Mutex
	r                       *rand.Rand
	cpu, memory, temp, disk float64
}

func newWalk(r *rand.Rand) *walk {
	return &walk{
		r:      r,
		cpu:    0.05 + 0.3*r.Float64(),
		memory: 0.2 + 0.4*r.Float64(),
		temp:   38 + 10*r.Float64(),
		disk:   0.1 + 0.5*r.Float64(),
	}
}

// step moves v by up to ±d, kept in [lo, hi].
func (w *walk) step(v, d, lo, hi float64) float64 {
	return min(max(v+(2*w.r.Float64()-1)*d, lo), hi)
}

// sample returns the next sample; up is the time since the device booted.
func (w *walk) sample(up time.Duration) map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cpu = w.step(w.cpu, 0.08, 0, 1)
	w.memory = w.step(w.memory, 0.02, 0.05, 0.98)
	// Temperature follows load.
	w.temp = w.step(w.temp+(w.cpu-0.3)*0.5, 0.6, 20, 95)
	w.disk = w.step(w.disk+0.0005, 0.0005, 0, 1)
	return map[string]float64{
		"cpu":         round(w.cpu, 3),
		"memory":      round(w.memory, 3),
		"temperature": round(w.temp, 1),
		"disk":        round(w.disk, 4),
		"uptime":      up.Round(time.Second).Seconds(),
	}
}

func round(v float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(v*p) / p
}
