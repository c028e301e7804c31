package sim

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testpki"
)

// A simulator runs thousands of devices in one process: the per-sample
// cost of the synthetic telemetry and the cost of Stats over a large fleet
// are its hot paths.

func BenchmarkWalkSample(b *testing.B) {
	w := newWalk(rand.New(rand.NewPCG(1, 2)))
	b.ReportAllocs()
	for b.Loop() {
		w.sample(time.Hour)
	}
}

func BenchmarkStats10k(b *testing.B) {
	mfr, err := NewManufacturer("Acme")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{
		Devices: 10000, Manufacturer: mfr, ESTURL: "https://127.0.0.1:1", MQTTAddr: "127.0.0.1:1",
		ServerCA: testpki.NewCA(b, "server CA").Pool(), StateDir: b.TempDir(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if st := s.Stats(); st.Devices != 10000 {
			b.Fatal(st)
		}
	}
}

func BenchmarkFactoryIdentity(b *testing.B) {
	mfr, err := NewManufacturer("Acme")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mfr.FactoryIdentity("SN-1"); err != nil {
			b.Fatal(err)
		}
	}
}
