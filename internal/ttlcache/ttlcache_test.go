package ttlcache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testclock"
)

// counter is a load function that counts its calls and answers with the
// call number, or err when set.
type counter struct {
	calls int
	err   error
	// during runs inside the load, before it answers.
	during func()
}

func (c *counter) load(context.Context, string) (int, error) {
	c.calls++
	if c.during != nil {
		c.during()
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.calls, nil
}

func TestCache(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		// step runs between a first Get (which loads 1) and the second.
		step      func(c *Cache[int], clock *testclock.Clock, l *counter)
		wantValue int
		wantCalls int
	}{
		{"within the TTL: from memory", func(_ *Cache[int], clock *testclock.Clock, _ *counter) { clock.Add(9 * time.Second) }, 1, 1},
		{"at the TTL: loaded again", func(_ *Cache[int], clock *testclock.Clock, _ *counter) { clock.Add(10 * time.Second) }, 2, 2},
		{"clock gone back: loaded again", func(_ *Cache[int], clock *testclock.Clock, _ *counter) { clock.Add(-time.Second) }, 2, 2},
		{"forgotten: loaded again", func(c *Cache[int], _ *testclock.Clock, _ *counter) { c.Forget("k") }, 2, 2},
		{"forgotten during a load: that load is not kept", func(c *Cache[int], _ *testclock.Clock, l *counter) {
			c.Forget("k")
			l.during = func() { c.Forget("k") }
			if v, _ := c.Get(t.Context(), "k", l.load); v != 2 {
				t.Errorf("load during Forget answered %d, want 2", v)
			}
			l.during = nil
		}, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := testclock.New(t0)
			c := New[int](clock, 10*time.Second)
			l := &counter{}
			if v, err := c.Get(t.Context(), "k", l.load); v != 1 || err != nil {
				t.Fatalf("first Get: %d, %v", v, err)
			}
			tt.step(c, clock, l)
			v, err := c.Get(t.Context(), "k", l.load)
			if err != nil || v != tt.wantValue || l.calls != tt.wantCalls {
				t.Fatalf("second Get: %d, %v after %d loads; want %d after %d", v, err, l.calls, tt.wantValue, tt.wantCalls)
			}
		})
	}
}

// TestCacheErrorsNotKept: a failed load is tried again at the next Get.
func TestCacheErrorsNotKept(t *testing.T) {
	t.Parallel()
	c := New[int](testclock.New(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)), time.Minute)
	l := &counter{err: errors.New("store down")}
	if _, err := c.Get(t.Context(), "k", l.load); err == nil {
		t.Fatal("no error from a failing load")
	}
	l.err = nil
	if v, err := c.Get(t.Context(), "k", l.load); v != 2 || err != nil {
		t.Fatalf("after the error: %d, %v; want a fresh load (2)", v, err)
	}
	var nilCache *Cache[int]
	nilCache.Forget("k") // must not panic
}
