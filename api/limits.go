package api

import (
	lru "container/list"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/steward-iot/steward"
)

// Limits bounds what one caller can make the management plane do. Zero
// fields take the defaults.
type Limits struct {
	// TokenRate is the sustained number of requests per second one API
	// token may send, TokenBurst how many it may send at once. Defaults: 50
	// per second, burst 100. A negative TokenRate turns the limit off.
	TokenRate  float64
	TokenBurst int
	// AuthFailures failed bearer-token attempts from one client address
	// within AuthFailureWindow block every authenticated request from that
	// address for AuthBackoff, doubled at each further block up to
	// AuthBackoffMax. Defaults: 10 a minute; 1 minute doubling up to 15
	// minutes. A negative AuthFailures turns the limit off.
	AuthFailures      int
	AuthFailureWindow time.Duration
	AuthBackoff       time.Duration
	AuthBackoffMax    time.Duration
	// MaxTracked bounds how many client addresses, and how many tokens,
	// the limiters remember; the least recently seen are forgotten first.
	// Default 10000.
	MaxTracked int
}

func (l *Limits) defaults() {
	if l.TokenRate == 0 {
		l.TokenRate = 50
	}
	if l.TokenBurst <= 0 {
		l.TokenBurst = 100
	}
	if l.AuthFailures == 0 {
		l.AuthFailures = 10
	}
	if l.AuthFailureWindow <= 0 {
		l.AuthFailureWindow = time.Minute
	}
	if l.AuthBackoff <= 0 {
		l.AuthBackoff = time.Minute
	}
	if l.AuthBackoffMax <= 0 {
		l.AuthBackoffMax = 15 * time.Minute
	}
	if l.AuthBackoffMax < l.AuthBackoff {
		l.AuthBackoffMax = l.AuthBackoff
	}
	if l.MaxTracked <= 0 {
		l.MaxTracked = 10000
	}
}

// rateLimitedError is a 429 refusal with the time after which the caller
// may try again (the Retry-After header).
type rateLimitedError struct {
	err   *steward.Error
	after time.Duration
}

func (e *rateLimitedError) Error() string { return e.err.Error() }
func (e *rateLimitedError) Unwrap() error { return e.err }

// tooMany makes a 429 refusal; the message names the wait in seconds, the
// same number as Retry-After.
func tooMany(after time.Duration, what string) error {
	return &rateLimitedError{
		err:   steward.Errorf(steward.CodeRateLimited, "%s; try again in %ds", what, retryAfterSeconds(after)),
		after: after,
	}
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one:
// Retry-After has no fractions, and 0 would invite an immediate retry.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	return max(s, 1)
}

// setRetryAfter sets Retry-After when err is a rate-limit refusal.
func setRetryAfter(w http.ResponseWriter, err error) {
	var rl *rateLimitedError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(rl.after), 10))
	}
}

// authenticateLimited authenticates r behind the two limits. A client
// address that failed too often gets 429 instead of 401 for every wrong
// token until its block ends, so guessing slows to a crawl; a valid token
// still gets through, so that a guesser sharing an address with operators
// (a proxy, a NAT) cannot lock them out. Tokens are 256-bit random secrets:
// a 429 that tells "wrong" from "right" gives a guesser nothing a 401 does
// not. A valid token over its request rate is refused after.
func (s *Server) authenticateLimited(r *http.Request) (principal, error) {
	now := s.clock.Now()
	client := clientKey(r)
	p, err := s.authenticate(r)
	if err != nil {
		if d := s.failures.blocked(client, now); d > 0 {
			return principal{}, tooMany(d, "too many failed authentication attempts from this address")
		}
		// A request without credentials is not a guess; one with wrong
		// credentials is.
		if steward.ErrorCode(err) == steward.CodeUnauthenticated && r.Header.Get("Authorization") != "" {
			if d := s.failures.fail(client, now); d > 0 {
				s.log.Warn("api authentication failures: blocking client address", "request_id", requestIDFrom(r.Context()),
					"client", client, "for", d)
			}
		}
		return principal{}, err
	}
	if d := s.tokens.allow(p.tokenID, now); d > 0 {
		return principal{}, tooMany(d, "this token sends requests faster than its limit")
	}
	return p, nil
}

// clientKey is the client address the failure limit counts against: the
// peer's IP (the management plane trusts no forwarding header), IPv6 by its
// /64, which one subscriber usually holds whole.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// failureLimiter counts failed authentications per client address in a
// fixed window and blocks an address that reaches the limit, for a back-off
// that doubles at each block. Hand-written: golang.org/x/time/rate limits
// a rate but has no notion of a doubling back-off. Memory is bounded by an
// LRU list; an entry is forgotten once it has been quiet long enough for
// its window and block to be over (and its strikes to be forgiven), or when
// the list is full.
type failureLimiter struct {
	lim     Limits
	mu      sync.Mutex
	entries map[string]*lru.Element
	order   lru.List // of *failureEntry, most recently failed first
}

type failureEntry struct {
	key          string
	windowStart  time.Time
	failures     int
	blockedUntil time.Time
	strikes      int // blocks so far, for the doubling
	last         time.Time
}

func newFailureLimiter(lim Limits) *failureLimiter {
	return &failureLimiter{lim: lim, entries: map[string]*lru.Element{}}
}

// retention is how long an entry is kept after its last failure: its block
// (at most AuthBackoffMax) is over and it stayed quiet for another
// AuthBackoffMax. Being the same for every entry keeps the LRU order the
// order of expiry.
func (f *failureLimiter) retention() time.Duration {
	return f.lim.AuthFailureWindow + 2*f.lim.AuthBackoffMax
}

// blocked returns how long key stays blocked from now; 0 when it is not.
func (f *failureLimiter) blocked(key string, now time.Time) time.Duration {
	if f.lim.AuthFailures < 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	el, ok := f.entries[key]
	if !ok {
		return 0
	}
	return max(el.Value.(*failureEntry).blockedUntil.Sub(now), 0)
}

// fail records a failed attempt of key and returns the block it started,
// if any.
func (f *failureLimiter) fail(key string, now time.Time) time.Duration {
	if f.lim.AuthFailures < 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweep(now)
	var e *failureEntry
	if el, ok := f.entries[key]; ok {
		e = el.Value.(*failureEntry)
		f.order.MoveToFront(el)
	} else {
		for f.order.Len() >= f.lim.MaxTracked {
			f.remove(f.order.Back())
		}
		e = &failureEntry{key: key, windowStart: now}
		f.entries[key] = f.order.PushFront(e)
	}
	e.last = now
	if now.Sub(e.windowStart) >= f.lim.AuthFailureWindow || now.Before(e.windowStart) {
		e.windowStart, e.failures = now, 0
	}
	e.failures++
	if e.failures < f.lim.AuthFailures {
		return 0
	}
	d := f.lim.AuthBackoff
	for i := 0; i < e.strikes && d < f.lim.AuthBackoffMax; i++ {
		d *= 2
	}
	d = min(d, f.lim.AuthBackoffMax)
	e.strikes++
	e.blockedUntil = now.Add(d)
	e.windowStart, e.failures = now, 0
	return d
}

// sweep forgets the entries past their retention, oldest first.
func (f *failureLimiter) sweep(now time.Time) {
	for el := f.order.Back(); el != nil; el = f.order.Back() {
		if now.Sub(el.Value.(*failureEntry).last) < f.retention() {
			return
		}
		f.remove(el)
	}
}

func (f *failureLimiter) remove(el *lru.Element) {
	delete(f.entries, el.Value.(*failureEntry).key)
	f.order.Remove(el)
}

// tracked is how many client addresses the limiter remembers.
func (f *failureLimiter) tracked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.order.Len()
}

// tokenLimiter is a token bucket per API token (golang.org/x/time/rate,
// driven by the server's clock), the least recently used forgotten when
// MaxTracked are held: a bucket idle for TokenBurst/TokenRate is full
// again, so forgetting it changes nothing.
type tokenLimiter struct {
	lim     Limits
	mu      sync.Mutex
	entries map[string]*lru.Element
	order   lru.List // of *tokenEntry, most recently used first
}

type tokenEntry struct {
	key     string
	limiter *rate.Limiter
}

func newTokenLimiter(lim Limits) *tokenLimiter {
	return &tokenLimiter{lim: lim, entries: map[string]*lru.Element{}}
}

// allow takes one request of key at now; it returns 0 when the request may
// go, or how long until it could.
func (l *tokenLimiter) allow(key string, now time.Time) time.Duration {
	if l.lim.TokenRate < 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var e *tokenEntry
	if el, ok := l.entries[key]; ok {
		e = el.Value.(*tokenEntry)
		l.order.MoveToFront(el)
	} else {
		for l.order.Len() >= l.lim.MaxTracked {
			back := l.order.Back()
			delete(l.entries, back.Value.(*tokenEntry).key)
			l.order.Remove(back)
		}
		e = &tokenEntry{key: key, limiter: rate.NewLimiter(rate.Limit(l.lim.TokenRate), l.lim.TokenBurst)}
		l.entries[key] = l.order.PushFront(e)
	}
	r := e.limiter.ReserveN(now, 1)
	if !r.OK() {
		// Only when the burst is below one request, which defaults prevent.
		return time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request takes nothing from the bucket
		return d
	}
	return 0
}
