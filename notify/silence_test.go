package notify

import (
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestSilenced(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	labels := map[string]string{"site": "paris", "model": "gw-100", "env": "prod"}
	m := func(name string, op steward.MatchOp, value string) steward.Matcher {
		return steward.Matcher{Name: name, Op: op, Value: value}
	}
	cases := []struct {
		name     string
		matchers []steward.Matcher
		from, to time.Duration // relative to now
		want     bool
	}{
		{"equal", []steward.Matcher{m("site", "=", "paris")}, -time.Hour, time.Hour, true},
		{"equal other value", []steward.Matcher{m("site", "=", "lyon")}, -time.Hour, time.Hour, false},
		{"not equal", []steward.Matcher{m("site", "!=", "lyon")}, -time.Hour, time.Hour, true},
		{"not equal same", []steward.Matcher{m("site", "!=", "paris")}, -time.Hour, time.Hour, false},
		{"regex whole value", []steward.Matcher{m("model", "=~", "gw-.*")}, -time.Hour, time.Hour, true},
		{"regex is anchored", []steward.Matcher{m("model", "=~", "gw")}, -time.Hour, time.Hour, false},
		{"regex alternation anchored", []steward.Matcher{m("site", "=~", "lyon|par")}, -time.Hour, time.Hour, false},
		{"missing label equals empty", []steward.Matcher{m("rack", "=", "")}, -time.Hour, time.Hour, true},
		{"missing label not equal", []steward.Matcher{m("rack", "!=", "r1")}, -time.Hour, time.Hour, true},
		{"all must match", []steward.Matcher{m("site", "=", "paris"), m("env", "=", "dev")}, -time.Hour, time.Hour, false},
		{"all match", []steward.Matcher{m("site", "=", "paris"), m("env", "=~", "prod|staging")}, -time.Hour, time.Hour, true},
		{"not started", []steward.Matcher{m("site", "=", "paris")}, time.Second, time.Hour, false},
		{"starts now", []steward.Matcher{m("site", "=", "paris")}, 0, time.Hour, true},
		{"ended now", []steward.Matcher{m("site", "=", "paris")}, -time.Hour, 0, false},
		{"bad regex matches nothing", []steward.Matcher{m("site", "=~", "(")}, -time.Hour, time.Hour, false},
		{"no matchers mutes nothing", nil, -time.Hour, time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ss := []steward.Silence{{ID: "s1", Matchers: tc.matchers, StartsAt: now.Add(tc.from), EndsAt: now.Add(tc.to)}}
			s, got := Silenced(ss, labels, now)
			if got != tc.want || (got && s.ID != "s1") {
				t.Fatalf("Silenced = %v, %v; want %v", s, got, tc.want)
			}
		})
	}
}

func TestMatcherValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m  steward.Matcher
		ok bool
	}{
		{steward.Matcher{Name: "site", Op: "=", Value: "x"}, true},
		{steward.Matcher{Name: "site", Op: "=~", Value: "a|b"}, true},
		{steward.Matcher{Name: "site", Op: "=~", Value: "("}, false},
		{steward.Matcher{Name: "site", Op: "~", Value: "x"}, false},
		{steward.Matcher{Name: "", Op: "=", Value: "x"}, false},
		{steward.Matcher{Name: "a b", Op: "=", Value: "x"}, false},
	} {
		if err := tc.m.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.m, err, tc.ok)
		}
	}
}
