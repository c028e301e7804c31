package agent

import (
	"math/rand/v2"
	"sync"
	"time"
)

// lockedRand shares one *rand.Rand between the agent's goroutines.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) int64N(n int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Int64N(n)
}

// backoff is exponential backoff with full jitter: the n-th wait is drawn
// uniformly from [0, min(max, min·2ⁿ)], which spreads a fleet that lost its
// server at the same moment over the whole window instead of bringing it
// back in synchronised waves. Written here because it is a few lines that
// must use the agent's Rand; paho's own reconnect loop is not used (it has
// no jitter and no context).
type backoff struct {
	min, max time.Duration
	rand     *lockedRand
	attempt  int
}

// ceiling is the upper bound of the next wait.
func (b *backoff) ceiling() time.Duration {
	c := b.min
	for i := 0; i < b.attempt && c < b.max; i++ {
		c *= 2
	}
	return min(c, b.max)
}

// next returns the next wait and moves one step up.
func (b *backoff) next() time.Duration {
	c := b.ceiling()
	b.attempt++
	if c <= 0 {
		return 0
	}
	return time.Duration(b.rand.int64N(int64(c) + 1))
}

// reset starts again from the minimum, after a connection that held.
func (b *backoff) reset() { b.attempt = 0 }
