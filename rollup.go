package steward

import "time"

// The resolutions of telemetry rollups.
const (
	RollupMinute = time.Minute
	RollupHour   = time.Hour
	// RollupDay buckets are UTC days, summed from the day's hours: long
	// ranges (fleet analytics over a month) read one row per device-day.
	RollupDay = 24 * time.Hour
)

// Rollup summarises a device's samples of one metric over one bucket of
// time: a minute, an hour or a UTC day starting at At (on a whole minute,
// hour or day).
type Rollup struct {
	TenantID string    `json:"tenant_id"`
	DeviceID string    `json:"device_id"`
	Metric   string    `json:"metric"`
	At       time.Time `json:"at"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	// Sum and Count rather than an average, so that buckets add up: an
	// hour is the sum of its minutes, a day of its hours.
	Sum   float64 `json:"sum"`
	Count int64   `json:"count"`
}

// Avg is the mean of the bucket's samples (0 for an empty bucket).
func (r Rollup) Avg() float64 {
	if r.Count == 0 {
		return 0
	}
	return r.Sum / float64(r.Count)
}
