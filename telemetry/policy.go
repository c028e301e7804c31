package telemetry

import "time"

// Policy says which samples the pipeline accepts and how long it keeps
// them. A zero field takes its default.
type Policy struct {
	// MaxAge is how old, by the server's clock, a sample may be and still
	// be stored (default 7 days): a device that was offline may send what
	// it buffered, up to this. Older samples are dropped and counted.
	MaxAge time.Duration
	// MaxAhead is how far in the future a sample may be (default 5
	// minutes): a little clock skew is tolerated, a wrong clock is not.
	MaxAhead time.Duration
	// Raw, Minute, Hour and Day are how long raw samples and minute, hour
	// and day rollups are kept (defaults 7, 30, 400 days and 5 years). Raw
	// samples are kept at least MaxAge plus a quarter of an hour, minute
	// rollups at least MaxAge plus two hours, hour rollups at least MaxAge
	// plus two days, whatever is set: late samples' buckets are recomputed
	// from them.
	Raw, Minute, Hour, Day time.Duration
}

// The defaults of Policy.
const (
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultMaxAhead        = 5 * time.Minute
	DefaultRawRetention    = 7 * 24 * time.Hour
	DefaultMinuteRetention = 30 * 24 * time.Hour
	DefaultHourRetention   = 400 * 24 * time.Hour
	DefaultDayRetention    = 5 * 365 * 24 * time.Hour
)

// WithDefaults returns p with its zero fields set to their defaults.
func (p Policy) WithDefaults() Policy {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&p.MaxAge, DefaultMaxAge)
	def(&p.MaxAhead, DefaultMaxAhead)
	def(&p.Raw, DefaultRawRetention)
	def(&p.Minute, DefaultMinuteRetention)
	def(&p.Hour, DefaultHourRetention)
	def(&p.Day, DefaultDayRetention)
	return p
}

// Accepts reports whether a sample at at is inside the acceptance window
// at now: [now-MaxAge, now+MaxAhead]. p must have its defaults.
func (p Policy) Accepts(at, now time.Time) bool {
	return !at.Before(now.Add(-p.MaxAge)) && !at.After(now.Add(p.MaxAhead))
}

// rollupSlack is how far before the oldest acceptable sample's minute the
// rollup job still recomputes buckets: room for the time between a late
// sample's acceptance and the next run. pruneSlack, larger, is how much
// more raw data the retention job keeps before that, so the job never
// recomputes a minute whose raw samples are partly deleted.
const (
	rollupSlack = 5 * time.Minute
	pruneSlack  = 15 * time.Minute
)

// horizon is the oldest minute the rollup job may recompute at now.
func (p Policy) horizon(now time.Time) time.Time {
	return now.Add(-p.MaxAge).Truncate(time.Minute).Add(-rollupSlack)
}
