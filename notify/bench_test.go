package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// BenchmarkSilenced measures matching one notification against 50 active
// silences, none of which match (the worst case: every matcher is tried).
func BenchmarkSilenced(b *testing.B) {
	now := time.Now()
	var ss []steward.Silence
	for i := range 50 {
		ss = append(ss, steward.Silence{ID: fmt.Sprint(i), StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour),
			Matchers: []steward.Matcher{{Name: "site", Op: "=~", Value: "par.*"}, {Name: "model", Op: "=", Value: fmt.Sprint("gw-", i)}}})
	}
	labels := map[string]string{"site": "paris", "model": "gw-x"}
	for b.Loop() {
		if _, ok := Silenced(ss, labels, now); ok {
			b.Fatal("matched")
		}
	}
}

// BenchmarkSign measures signing a 1 KiB webhook body.
func BenchmarkSign(b *testing.B) {
	body := make([]byte, 1024)
	for b.Loop() {
		_ = Sign("secret", 1795773600, body)
	}
}
