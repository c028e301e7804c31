package analytics

import (
	"math"
	"strconv"
	"strings"
)

// Num writes a number for a sentence: whole numbers from 100 up, with
// thousands separators; one decimal from 1 up; two significant digits
// below 1; no trailing ".0".
func Num(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 100:
		s := Count(int(math.Abs(math.Round(v))))
		if v < 0 {
			s = "-" + s
		}
		return s
	case a >= 1:
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0")
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 2, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// Count writes a count with thousands separators (1,200). Written here
// because golang.org/x/text/message would be a dependency for one comma.
func Count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
