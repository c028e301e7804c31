// Package retention is the job that deletes data past its retention
// period, per data class and per tenant: each class of the registry
// (steward.RetentionRegistry) is pruned with the tenant's own period when
// it set one (steward.RetentionOverride), the class's default otherwise.
// Raw telemetry and its rollups have their own job (telemetry.Retention),
// with server-wide periods.
package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Store is what the job reads: the tenants and their overrides.
type Store interface {
	ListTenants(ctx context.Context) ([]steward.Tenant, error)
	ListRetentionOverrides(ctx context.Context, tenantID string) ([]steward.RetentionOverride, error)
}

// Config configures the job.
type Config struct {
	Store    Store
	Registry *steward.RetentionRegistry
	Clock    steward.Clock
	Logger   *slog.Logger
	// Every is how often the job runs (default 1 hour).
	Every time.Duration
	// Chunk is the most rows one delete takes (default 5000): on SQLite
	// every other writer waits for it.
	Chunk int
	// Auditor, when set, records each run that deleted something or
	// failed in the tenant's audit log: what it deleted per class, and
	// the cutoffs.
	Auditor steward.Auditor
}

// Job prunes every registered class of every tenant.
type Job struct {
	cfg Config
}

// New returns the job; start it with Run.
func New(cfg Config) *Job {
	if cfg.Every <= 0 {
		cfg.Every = time.Hour
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 5000
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Job{cfg: cfg}
}

// Run prunes once at once and then every Every, until ctx is done.
func (j *Job) Run(ctx context.Context) {
	t := time.NewTicker(j.cfg.Every)
	defer t.Stop()
	for {
		pruned, err := j.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			j.cfg.Logger.Error("retention", "err", err)
		}
		for class, n := range pruned {
			j.cfg.Logger.Info("retention", "class", class, "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce deletes, for every tenant and class, the rows older than the
// tenant's period of the class at now, chunk by chunk, and returns how
// many it deleted per class (classes with none left out). A tenant or
// class that fails does not stop the others: the errors are joined.
func (j *Job) RunOnce(ctx context.Context) (map[string]int, error) {
	now := j.cfg.Clock.Now().UTC()
	pruned := map[string]int{}
	tenants, err := j.cfg.Store.ListTenants(ctx)
	if err != nil {
		return pruned, err
	}
	classes := j.cfg.Registry.Classes()
	var errs []error
	for _, t := range tenants {
		overrides, err := j.cfg.Store.ListRetentionOverrides(ctx, t.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		run := tenantRun{Deleted: map[string]int{}, Before: map[string]time.Time{}}
		var terrs []error
		for _, c := range classes {
			if err := ctx.Err(); err != nil {
				j.audit(ctx, t.ID, now, run, terrs)
				return pruned, err
			}
			before := now.Add(-c.Period(overrides))
			n, err := j.drain(ctx, func() (int, error) { return c.Prune(ctx, t.ID, before, j.cfg.Chunk) })
			if n > 0 {
				pruned[c.Name] += n
				run.Deleted[c.Name], run.Before[c.Name] = n, before
			}
			if err != nil {
				terrs = append(terrs, steward.WrapError(steward.ErrorCode(err), err, "prune %s of tenant %s", c.Name, t.ID))
			}
		}
		j.audit(ctx, t.ID, now, run, terrs)
		errs = append(errs, terrs...)
	}
	return pruned, errors.Join(errs...)
}

// tenantRun is what one run did to one tenant's data, as its audit record
// states it: rows deleted per class (the audit log's class counts the
// records whose bodies it removed), and each of those classes' cutoff.
type tenantRun struct {
	Deleted map[string]int       `json:"deleted"`
	Before  map[string]time.Time `json:"before"`
}

// audit records a run over one tenant that deleted something or failed;
// a run with nothing to do leaves no record, or the hourly job would
// fill the log with them.
func (j *Job) audit(ctx context.Context, tenant string, now time.Time, run tenantRun, errs []error) {
	if j.cfg.Auditor == nil || len(run.Deleted) == 0 && len(errs) == 0 {
		return
	}
	after, err := json.Marshal(run)
	if err != nil {
		j.cfg.Logger.Error("AUDIT RECORD LOST: a retention run is not in the audit log", "tenant", tenant, "err", err)
		return
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(run.Deleted)) {
		parts = append(parts, fmt.Sprintf("%s %d", c, run.Deleted[c]))
	}
	r := steward.AuditRecord{TenantID: tenant, Actor: "system:retention", Action: "retention.run", Target: "tenant:" + tenant,
		Outcome: steward.AuditSuccess, After: after, At: now, Detail: "deleted: " + strings.Join(parts, ", ")}
	if len(parts) == 0 {
		r.Detail = "deleted nothing"
	}
	if len(errs) > 0 {
		r.Outcome = steward.AuditFailure
		r.Detail += "; failed: " + errors.Join(errs...).Error()
		r.Detail = steward.Truncate(r.Detail, 4000)
	}
	if err := j.cfg.Auditor.Record(context.WithoutCancel(ctx), r); err != nil {
		j.cfg.Logger.Error("AUDIT RECORD LOST: a retention run is not in the audit log", "tenant", tenant, "err", err)
	}
}

// drain calls del until it deletes less than a chunk, and sums.
func (j *Job) drain(ctx context.Context, del func() (int, error)) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := del()
		total += n
		if err != nil || n < j.cfg.Chunk {
			return total, err
		}
	}
}
