package query

import (
	"strings"
	"testing"
)

// BenchmarkParseCompile measures the work a device listing does per request
// before it reaches the database: parse the query and compile it.
func BenchmarkParseCompile(b *testing.B) {
	queries := map[string]string{
		"typical":    `model = "gw-100" AND firmware < "2.0.0" AND labels.site ~ "plant-*" AND NOT online`,
		"attributes": `attributes.temp > 50 OR attributes.region = "eu-west" OR attributes.secure_boot = false`,
		// Near MaxLength: what a hostile or generated query costs.
		"large": strings.Repeat(`labels.k ~ "a*b" OR `, 200) + `online`,
	}
	for name, src := range queries {
		for _, d := range []Dialect{SQLite, Postgres} {
			b.Run(name+"/"+d.String(), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(src)))
				for b.Loop() {
					e, err := Parse(src)
					if err != nil {
						b.Fatal(err)
					}
					if _, _, err := Compile(e, d, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
