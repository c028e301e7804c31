package sqlstore

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The store reads back, on hot paths, the flat JSON objects it writes: a
// reading's metrics ({"name": value, …}) in the rollup job, a device's
// latest values ({"name": [at, value], …}) in the telemetry writer. They
// are scanned by hand, a tenth of encoding/json's time; anything the
// scanner does not expect (escapes in a name, another shape) goes to
// encoding/json, which also gives the errors.

// objScanner reads a JSON text from i on.
type objScanner struct {
	b []byte
	i int
}

// space skips white space (JSONB's text has some).
func (sc *objScanner) space() {
	for sc.i < len(sc.b) && (sc.b[sc.i] == ' ' || sc.b[sc.i] == '\n' || sc.b[sc.i] == '\t' || sc.b[sc.i] == '\r') {
		sc.i++
	}
}

// expect consumes c after white space, and reports whether it was there.
func (sc *objScanner) expect(c byte) bool {
	sc.space()
	if sc.i < len(sc.b) && sc.b[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// token returns the text up to the next delimiter: a number's.
func (sc *objScanner) token() string {
	sc.space()
	j := sc.i
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ',', ']', '}', ' ', '\n', '\t', '\r':
			return string(sc.b[j:sc.i])
		}
		sc.i++
	}
	return string(sc.b[j:sc.i])
}

// scanObject reads a JSON object whose names have no escapes, calling value
// for each member with the scanner at its value, which value consumes. It
// reports whether the whole of b was such an object and every value
// returned true.
func scanObject(b []byte, value func(name string, sc *objScanner) bool) bool {
	sc := &objScanner{b: b}
	if !sc.expect('{') {
		return false
	}
	if sc.expect('}') {
		sc.space()
		return sc.i == len(b)
	}
	for {
		if !sc.expect('"') {
			return false
		}
		j := sc.i
		for sc.i < len(b) && b[sc.i] != '"' && b[sc.i] != '\\' {
			sc.i++
		}
		if sc.i == len(b) || b[sc.i] != '"' {
			return false
		}
		name := string(b[j:sc.i])
		sc.i++
		if !sc.expect(':') || !value(name, sc) {
			return false
		}
		if sc.expect('}') {
			sc.space()
			return sc.i == len(b)
		}
		if !sc.expect(',') {
			return false
		}
	}
}

// metricValue is one metric of a reading.
type metricValue struct {
	name  string
	value float64
}

// readingMetrics appends the metrics of a reading's metrics object to buf.
func readingMetrics(b []byte, buf []metricValue) ([]metricValue, error) {
	n := len(buf)
	ok := scanObject(b, func(name string, sc *objScanner) bool {
		v, err := strconv.ParseFloat(sc.token(), 64)
		if err != nil {
			return false
		}
		buf = append(buf, metricValue{name, v})
		return true
	})
	if ok {
		return buf, nil
	}
	buf = buf[:n]
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return buf, fmt.Errorf("reading's metrics: %w", err)
	}
	for k, v := range m {
		buf = append(buf, metricValue{k, v})
	}
	return buf, nil
}
