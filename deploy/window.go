package deploy

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/steward-iot/steward"
)

// Window is a compiled maintenance window.
//
// The cron expression is evaluated on the wall clock of the window's time
// zone: times are moved into a zone-less copy of that wall clock (the same
// hours and minutes, read as UTC), the schedule finds the next start there,
// and the start and end are read back in the zone. So a window at 02:00
// opens at 02:00 local time on both sides of a daylight-saving change; a
// start or end that falls in the hour skipped in spring is the moment of
// the jump (a Berlin window from 02:00 opens at 03:00 CEST on the last
// Sunday of March); a window that covers autumn's repeated hour is open
// through both of its passes.
// The duration is wall-clock time too: a 01:00 window of 4 hours ends at
// 05:00 local time even on the night that has 3 or 5 hours between them.
type Window struct {
	steward.MaintenanceWindow
	sched cron.Schedule
	loc   *time.Location
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// CompileWindow parses a window's cron expression (five fields, or a
// descriptor such as @daily) and loads its IANA time zone.
func CompileWindow(w steward.MaintenanceWindow) (*Window, error) {
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil || w.TimeZone == "" || w.TimeZone == "Local" {
		return nil, steward.Errorf(steward.CodeInvalid, "maintenance window %q: unknown time zone %q", w.Name, w.TimeZone)
	}
	sched, err := cronParser.Parse(w.Cron)
	if err != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "maintenance window %q: cron %q: %v", w.Name, w.Cron, err)
	}
	if w.Duration <= 0 {
		return nil, steward.Errorf(steward.CodeInvalid, "maintenance window %q needs a positive duration", w.Name)
	}
	if ss, ok := sched.(*cron.SpecSchedule); ok {
		ss.Location = time.UTC // the wall clock, see Window
	}
	return &Window{MaintenanceWindow: w, sched: sched, loc: loc}, nil
}

// wall returns t's wall clock in the window's zone, read as UTC.
func (w *Window) wall(t time.Time) time.Time {
	l := t.In(w.loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// real returns the instant of a wall clock time in the window's zone. A
// time the clock skips (spring) is the instant of the jump; a time the
// clock shows twice (autumn) is the earlier instant for a start (first
// true) and the later one for an end, so that the window covers both.
func (w *Window) real(wall time.Time, first bool) time.Time {
	t := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), w.loc)
	start, end := t.ZoneBounds()
	switch got := w.wall(t); {
	case got.After(wall): // skipped; t is past the jump
		return start.UTC()
	case got.Before(wall): // skipped; t is before the jump
		return end.UTC()
	}
	// Shown twice? The other instant is one zone change away.
	if !start.IsZero() && first {
		_, before := start.Add(-time.Nanosecond).Zone()
		_, now := t.Zone()
		if d := time.Duration(before-now) * time.Second; d > 0 && w.wall(t.Add(-d)).Equal(wall) {
			return t.Add(-d).UTC()
		}
	}
	if !end.IsZero() && !first {
		_, after := end.Zone()
		_, now := t.Zone()
		if d := time.Duration(now-after) * time.Second; d > 0 && w.wall(t.Add(d)).Equal(wall) {
			return t.Add(d).UTC()
		}
	}
	return t.UTC()
}

// At reports whether the window is open at t and, if so, when it closes;
// when it is not, from and to are its next opening.
func (w *Window) At(t time.Time) (open bool, from, to time.Time) {
	now := w.wall(t)
	d := w.Duration.D()
	// The last start at or before now, if the window it opened is still
	// open: the first start after now−duration.
	if s := w.sched.Next(now.Add(-d - time.Nanosecond)); !s.IsZero() && !s.After(now) {
		// Several starts may fall in one duration; the window lasts
		// until the last of them ends.
		end := s.Add(d)
		for n := w.sched.Next(s); !n.IsZero() && !n.After(now); n = w.sched.Next(n) {
			end = n.Add(d)
		}
		if end.After(now) {
			return true, w.real(s, true), w.real(end, false)
		}
	}
	s := w.sched.Next(now)
	// In autumn's repeated hour a start may lie behind t in real time.
	for !s.IsZero() && !w.real(s, true).After(t) {
		s = w.sched.Next(s)
	}
	if s.IsZero() {
		return false, time.Time{}, time.Time{}
	}
	return false, w.real(s, true), w.real(s.Add(d), false)
}

// compileWindows compiles a deployment's windows.
func compileWindows(ws []steward.MaintenanceWindow) ([]*Window, error) {
	out := make([]*Window, len(ws))
	for i, w := range ws {
		c, err := CompileWindow(w)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// String names the window for reasons and logs.
func (w *Window) String() string {
	if w.Name != "" {
		return w.Name
	}
	return fmt.Sprintf("%q %s %s", w.Cron, w.Duration.D(), w.TimeZone)
}
