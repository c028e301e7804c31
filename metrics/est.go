package metrics

import (
	"context"
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward"
)

// Enroller wraps e so that every enrollment and renewal it decides is
// counted by outcome: "ok", or the code of the error (steward.Code). Requests
// the EST handler refuses before asking the enroller (a malformed body, a
// wrong content type) are not counted here.
func (m *Metrics) Enroller(e steward.Enroller) steward.Enroller {
	return &countingEnroller{Enroller: e, enroll: m.enroll, reenroll: m.reenroll, vec: m.est}
}

// outcomes are the counters of one operation, by outcome.
type outcomes map[steward.Code]prometheus.Counter

// okOutcome is the outcome label of a certificate issued.
const okOutcome steward.Code = "ok"

func resolveOutcomes(vec *prometheus.CounterVec, op string) outcomes {
	o := outcomes{}
	for _, c := range []steward.Code{okOutcome, steward.CodeInvalid, steward.CodeNotFound, steward.CodeConflict,
		steward.CodeUnauthenticated, steward.CodePermissionDenied, steward.CodeFailedPrecondition,
		steward.CodeTooLarge, steward.CodeUnsupported, steward.CodeUnavailable, steward.CodeInternal} {
		o[c] = vec.WithLabelValues(op, string(c))
	}
	return o
}

type countingEnroller struct {
	steward.Enroller // CACerts passes through
	enroll, reenroll outcomes
	vec              *prometheus.CounterVec
}

func (c *countingEnroller) Enroll(ctx context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	certs, err := c.Enroller.Enroll(ctx, r)
	c.count(c.enroll, "simpleenroll", err)
	return certs, err
}

func (c *countingEnroller) Reenroll(ctx context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	certs, err := c.Enroller.Reenroll(ctx, r)
	c.count(c.reenroll, "simplereenroll", err)
	return certs, err
}

func (c *countingEnroller) count(o outcomes, op string, err error) {
	code := okOutcome
	if err != nil {
		code = steward.ErrorCode(err)
	}
	if ctr, ok := o[code]; ok {
		ctr.Inc()
		return
	}
	c.vec.WithLabelValues(op, string(code)).Inc()
}
