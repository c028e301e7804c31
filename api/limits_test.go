package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// stoppedClock stands still until a test moves it: the limiters read only
// the server's clock, so no test sleeps.
type stoppedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stoppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stoppedClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// limitedEnv is a second API server over env's store and services, with
// a stopped clock and the given limits, answering through the OpenAPI
// checking transport.
type limitedEnv struct {
	*testEnv
	clock *stoppedClock
}

func newLimitedEnv(t *testing.T, lim Limits) *limitedEnv {
	t.Helper()
	e := newEnv(t)
	clock := &stoppedClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := e.api.cfg
	cfg.Clock, cfg.Limits = clock, lim
	limited := &testEnv{api: New(cfg), store: e.store, bus: e.bus, logs: e.logs, system: e.system}
	limited.srv = httptest.NewServer(limited.api)
	t.Cleanup(limited.srv.Close)
	limited.http = &http.Client{Transport: &checkingTransport{t: t, doc: loadDoc(t), api: limited.api, next: http.DefaultTransport}}
	return &limitedEnv{testEnv: limited, clock: clock}
}

// fromAddress is a copy of e whose requests come from another loopback
// address, a second client as the server sees it.
func (e *limitedEnv) fromAddress(t *testing.T, ip string) *limitedEnv {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	other := &testEnv{api: e.api, srv: e.srv, store: e.store, bus: e.bus, logs: e.logs, system: e.system,
		http: &http.Client{Transport: &checkingTransport{t: t, doc: loadDoc(t), api: e.api, next: tr}}}
	return &limitedEnv{testEnv: other, clock: e.clock}
}

// mustLimited checks a 429: a problem document with code rate_limited and
// Retry-After of want seconds.
func mustLimited(t *testing.T, r response, want string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", r.status, r.body)
	}
	if p := r.problem(t); p.Code != steward.CodeRateLimited || !strings.Contains(p.Detail, "try again in "+want+"s") {
		t.Fatalf("problem %+v", p)
	}
	if got := r.header.Get("Retry-After"); got != want {
		t.Fatalf("Retry-After %q, want %q", got, want)
	}
	checkSecurityHeaders(t, r.header, false, "")
}

func TestAuthFailureLimit(t *testing.T) {
	t.Parallel()
	e := newLimitedEnv(t, Limits{}) // the defaults: 10 a minute, 1 minute doubling to 15
	fail := func(n int) {
		t.Helper()
		for range n {
			e.must(t, http.StatusUnauthorized, "GET", "/api/v1/devices", "", nil) // no credentials: not counted
			e.must(t, http.StatusUnauthorized, "GET", "/api/v1/devices", "stw_guess", nil)
		}
	}

	fail(5)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil) // a success neither counts nor forgives
	fail(4)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
	fail(1) // the tenth failure in the minute starts the block
	mustLimited(t, e.call(t, "GET", "/api/v1/devices", "stw_guess", nil), "60")
	// A valid token still gets through: a guesser behind the same proxy
	// or NAT cannot lock the operators out.
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
	// Public routes stay open, and another client address is not blocked.
	e.must(t, http.StatusOK, "GET", "/healthz", "", nil)
	e.fromAddress(t, "127.0.0.2").must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
	if !strings.Contains(e.logs.String(), "blocking client address") || strings.Contains(e.logs.String(), "stw_guess") {
		t.Errorf("block not logged, or the guessed token logged:\n%s", e.logs.String())
	}

	e.clock.Add(59 * time.Second)
	mustLimited(t, e.call(t, "GET", "/api/v1/devices", "stw_guess", nil), "1")
	e.clock.Add(time.Second)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)

	// Each further block doubles, up to 15 minutes.
	for _, want := range []time.Duration{2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute} {
		fail(10)
		mustLimited(t, e.call(t, "GET", "/api/v1/devices", "stw_guess", nil), itoa(want))
		e.clock.Add(want)
		e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
	}

	// Failures spread wider than the window never block.
	for range 3 {
		fail(9)
		e.clock.Add(time.Minute)
	}
	e.must(t, http.StatusUnauthorized, "GET", "/api/v1/devices", "stw_guess", nil) // not blocked

	// After a long quiet the strikes are forgiven: the next block is 1 minute again.
	e.clock.Add(time.Hour)
	fail(10)
	mustLimited(t, e.call(t, "GET", "/api/v1/devices", "stw_guess", nil), "60")
}

func itoa(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

func TestTokenRateLimit(t *testing.T) {
	t.Parallel()
	e := newLimitedEnv(t, Limits{TokenRate: 2, TokenBurst: 3})
	other := e.newTenant(t, "other")
	e.clock.Add(2 * time.Second) // newTenant took one of the burst; refill
	for range 3 {
		e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
	}
	mustLimited(t, e.call(t, "GET", "/api/v1/devices", e.system, nil), "1")
	// Refused requests take nothing from the bucket.
	for range 5 {
		mustLimited(t, e.call(t, "POST", "/api/v1/tokens", e.system, TokenRequest{Name: "x", Role: "admin"}), "1")
	}
	// Another token has its own bucket; public routes have none.
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", other, nil)
	e.must(t, http.StatusOK, "GET", "/healthz", "", nil)
	// Half a second brings one request back (2 a second), not more.
	e.clock.Add(500 * time.Millisecond)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
	mustLimited(t, e.call(t, "GET", "/api/v1/devices", e.system, nil), "1")
	if n := e.tokenCount(t, other); n != 1 {
		t.Fatalf("refused requests wrote tokens: %d", n)
	}

	t.Run("off", func(t *testing.T) {
		e := newLimitedEnv(t, Limits{TokenRate: -1, TokenBurst: 1})
		for range 20 {
			e.must(t, http.StatusOK, "GET", "/api/v1/devices", e.system, nil)
		}
	})
}

// TestLimiterMemoryIsBounded checks that the limiters forget: the least
// recently seen when full, and the expired on their own.
func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	lim := Limits{AuthFailures: 2, MaxTracked: 3}
	lim.defaults()
	f := newFailureLimiter(lim)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if d := f.fail("a", now); d != 0 {
		t.Fatalf("first failure blocked for %s", d)
	}
	if d := f.fail("a", now); d != time.Minute {
		t.Fatalf("second failure blocked for %s, want 1m", d)
	}
	for _, k := range []string{"b", "c", "d", "e"} {
		f.fail(k, now)
	}
	if n := f.tracked(); n != 3 {
		t.Fatalf("tracking %d addresses, want 3", n)
	}
	if d := f.blocked("a", now); d != 0 {
		t.Fatalf("the least recently seen address was not forgotten: blocked %s", d)
	}
	f.fail("f", now.Add(f.retention()))
	if n := f.tracked(); n != 1 {
		t.Fatalf("tracking %d addresses after their retention, want 1", n)
	}

	tl := newTokenLimiter(lim)
	for _, k := range []string{"t1", "t2", "t3", "t4", "t5"} {
		tl.allow(k, now)
	}
	if n := tl.order.Len(); n != 3 || len(tl.entries) != 3 {
		t.Fatalf("tracking %d/%d tokens, want 3", n, len(tl.entries))
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ remote, want string }{
		{"192.0.2.7:4711", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"},
		{"unix", "unix"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if got := clientKey(r); got != c.want {
			t.Errorf("clientKey(%q) = %q, want %q", c.remote, got, c.want)
		}
	}
}

// BenchmarkLimiters measures what the limits add to every authenticated
// request: the block lookup of the client address and the token bucket.
func BenchmarkLimiters(b *testing.B) {
	lim := Limits{TokenRate: 1e9, TokenBurst: 1 << 30}
	lim.defaults()
	f, tl := newFailureLimiter(lim), newTokenLimiter(lim)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 1000 {
		f.fail(strconv.Itoa(i), now)
	}
	b.ReportAllocs()
	for b.Loop() {
		if f.blocked("10.0.0.1", now) != 0 || tl.allow("t-bench", now) != 0 {
			b.Fatal("limited")
		}
	}
}
