package agent

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/steward-iot/steward/estclient"
	"github.com/steward-iot/steward/internal/testpki"
)

func TestRenewalSchedule(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "device CA")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := 90 * 24 * time.Hour
	id := deviceIdentity(t, ca, "d-0123456789abcdefghij", start, start.Add(life))
	due := start.Add(60 * 24 * time.Hour) // two thirds of 90 days
	if got := renewAt(id.Cert); !got.Equal(due) {
		t.Fatalf("renewAt %v, want %v", got, due)
	}
	clock := newFakeClock(start)
	tests := []struct {
		name  string
		at    time.Time
		phase certPhase
		wait  time.Duration
	}{
		{"just issued", start, certFresh, time.Hour},
		{"half-way", start.Add(45 * 24 * time.Hour), certFresh, time.Hour},
		{"a minute before two thirds", due.Add(-time.Minute), certFresh, time.Minute},
		{"at two thirds", due, certDue, 0},
		{"a day before expiry", start.Add(life - 24*time.Hour), certDue, 0},
		{"at expiry", start.Add(life), certExpired, 0},
		{"long expired", start.Add(2 * life), certExpired, 0},
	}
	for _, tt := range tests {
		clock.Set(tt.at)
		now := clock.Now()
		if got := phaseOf(now, id.Cert); got != tt.phase {
			t.Errorf("%s: phase %v, want %v", tt.name, got, tt.phase)
		}
		if got := renewWait(now, id.Cert, time.Hour); got != tt.wait {
			t.Errorf("%s: wait %v, want %v", tt.name, got, tt.wait)
		}
	}
}

func TestRenewalScheduleShortLife(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "device CA")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := deviceIdentity(t, ca, "d-0123456789abcdefghij", start, start.Add(3*time.Minute))
	if got, want := renewAt(id.Cert), start.Add(2*time.Minute); !got.Equal(want) {
		t.Fatalf("renewAt %v, want %v", got, want)
	}
	if got := renewWait(start.Add(30*time.Second), id.Cert, time.Hour); got != 90*time.Second {
		t.Fatalf("wait %v, want 90s", got)
	}
}

func TestRetryWaitHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	newBO := func() *backoff {
		return &backoff{min: time.Millisecond, max: 10 * time.Millisecond, rand: &lockedRand{r: rand.New(rand.NewPCG(1, 1))}}
	}
	tests := []struct {
		name     string
		err      error
		min, max time.Duration
	}{
		{"plain error", errors.New("connection refused"), 0, 10 * time.Millisecond},
		{"503 with Retry-After", fmt.Errorf("simpleenroll: %w", &estclient.Error{StatusCode: 503, RetryAfter: 30 * time.Second}), 30 * time.Second, 30 * time.Second},
		{"pending enrollment", &estclient.Error{StatusCode: 202, RetryAfter: 5 * time.Minute}, 5 * time.Minute, 5 * time.Minute},
		{"absurd Retry-After capped", &estclient.Error{StatusCode: 503, RetryAfter: 240 * time.Hour}, maxRetryAfter, maxRetryAfter},
		{"403 without Retry-After", &estclient.Error{StatusCode: 403}, 0, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retryWait(newBO(), tt.err); got < tt.min || got > tt.max {
				t.Fatalf("wait %v, want within [%v, %v]", got, tt.min, tt.max)
			}
		})
	}
}
