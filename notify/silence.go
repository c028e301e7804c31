package notify

import (
	"regexp"
	"time"

	"github.com/steward-iot/steward"
)

// Silenced returns the first of silences that is active at at and whose
// matchers all match labels (a missing label has the empty value). A
// regular expression matches the whole value; one that does not compile
// (the store refuses those) matches nothing.
func Silenced(silences []steward.Silence, labels map[string]string, at time.Time) (*steward.Silence, bool) {
	for i := range silences {
		s := &silences[i]
		if s.Active(at) && matchAll(s.Matchers, labels) {
			return s, true
		}
	}
	return nil, false
}

func matchAll(ms []steward.Matcher, labels map[string]string) bool {
	if len(ms) == 0 {
		return false // a silence without matchers would mute everything: never stored, never honoured
	}
	// The plain comparisons first: a regular expression is compiled on
	// each call, so it is tried only when the rest already match.
	for _, regex := range []bool{false, true} {
		for _, m := range ms {
			if (m.Op == steward.MatchRegexp) == regex && !Match(m, labels) {
				return false
			}
		}
	}
	return true
}

// Match reports whether one matcher matches labels.
func Match(m steward.Matcher, labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case steward.MatchEqual:
		return v == m.Value
	case steward.MatchNotEqual:
		return v != m.Value
	case steward.MatchRegexp:
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		return err == nil && re.MatchString(v)
	}
	return false
}
