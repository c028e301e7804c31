package agent

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffBoundsAndJitter(t *testing.T) {
	t.Parallel()
	bo := &backoff{min: time.Second, max: 2 * time.Minute, rand: &lockedRand{r: rand.New(rand.NewPCG(1, 2))}}
	wantCeil := []time.Duration{1, 2, 4, 8, 16, 32, 64, 120, 120, 120}
	for i, c := range wantCeil {
		if got := bo.ceiling(); got != c*time.Second {
			t.Fatalf("attempt %d: ceiling %v, want %v", i, got, c*time.Second)
		}
		if d := bo.next(); d < 0 || d > c*time.Second {
			t.Fatalf("attempt %d: wait %v outside [0, %v]", i, d, c*time.Second)
		}
	}
	// Full jitter: at the cap, waits spread over the whole window rather
	// than bunching at the top.
	var low, high int
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := bo.next()
		if d < 0 || d > 2*time.Minute {
			t.Fatalf("wait %v beyond the cap", d)
		}
		seen[d] = true
		if d < time.Minute {
			low++
		} else {
			high++
		}
	}
	if low < 350 || high < 350 {
		t.Fatalf("waits not spread over the window: %d below 1m, %d above", low, high)
	}
	if len(seen) < 900 {
		t.Fatalf("only %d distinct waits in 1000: no jitter", len(seen))
	}
	bo.reset()
	if got := bo.ceiling(); got != time.Second {
		t.Fatalf("after reset ceiling %v, want 1s", got)
	}
}

func TestBackoffSeededIsReproducible(t *testing.T) {
	t.Parallel()
	seq := func(seed uint64) []time.Duration {
		bo := &backoff{min: time.Second, max: time.Minute, rand: &lockedRand{r: rand.New(rand.NewPCG(seed, seed))}}
		var out []time.Duration
		for range 8 {
			out = append(out, bo.next())
		}
		return out
	}
	a, b, c := seq(7), seq(7), seq(8)
	same := func(x, y []time.Duration) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("same seed, different waits")
	}
	if same(a, c) {
		t.Fatal("different seeds, same waits")
	}
}

func TestBackoffNoOverflow(t *testing.T) {
	t.Parallel()
	bo := &backoff{min: time.Second, max: 2 * time.Minute, rand: &lockedRand{r: rand.New(rand.NewPCG(3, 4))}}
	bo.attempt = 1 << 20 // a device that has been unreachable for years
	if c := bo.ceiling(); c != 2*time.Minute {
		t.Fatalf("ceiling %v after many attempts, want the cap", c)
	}
}
