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
// opens at 02:00 local time on both sides of a daylight-saving change, once
// a day (the repeated hour of autumn does not open it twice), and a start
// that falls in the hour skipped in spring opens at the first valid time
// after it (03:30 CEST for 02:30 on the last Sunday of March in Berlin).
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

// real returns the instant of a wall clock time in the window's zone.
func (w *Window) real(wall time.Time) time.Time {
	return time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), w.loc).UTC()
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
			return true, w.real(s), w.real(end)
		}
	}
	s := w.sched.Next(now)
	if s.IsZero() {
		return false, time.Time{}, time.Time{}
	}
	return false, w.real(s), w.real(s.Add(d))
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
