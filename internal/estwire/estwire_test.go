package estwire

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	der := []byte{0x30, 0x82, 0x01, 0x0a, 0xff, 0x00, 0x7f}
	for _, tc := range []struct {
		name, body      string
		want            []byte
		lenient, strict bool
	}{
		{"padded", base64.StdEncoding.EncodeToString(der), der, true, true},
		{"unpadded", base64.RawStdEncoding.EncodeToString(der), der, true, true},
		{"CRLF lines", "MIIB\r\nCv8A\r\nfw==\r\n", der, true, true},
		{"all white space kinds", " MIIB\tCv8A\vfw\f==\n", der, true, true},
		{"empty", "", []byte{}, true, true},
		{"bad character", "MIIB*v8Afw==", nil, false, false},
		{"impossible length", "MIIBC", nil, false, false},
		{"non-zero pad bits", "MIIBCv8Afx==", der, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, d := range []struct {
				name string
				fn   func([]byte) ([]byte, error)
				ok   bool
			}{{"Decode", Decode, tc.lenient}, {"DecodeStrict", DecodeStrict, tc.strict}} {
				got, err := d.fn([]byte(tc.body))
				if !d.ok {
					if err == nil || got != nil {
						t.Errorf("%s: got %x, %v; want an error and no output", d.name, got, err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Errorf("%s: got %x, %v; want %x", d.name, got, err, tc.want)
				}
			}
		})
	}
}

func TestEncodeLines(t *testing.T) {
	t.Parallel()
	if got := string(EncodeLines(nil)); got != "\r\n" {
		t.Fatalf("empty input: got %q", got)
	}
	for _, n := range []int{1, 47, 48, 49, 96, 1000} {
		b := bytes.Repeat([]byte{0xa7}, n)
		enc := EncodeLines(b)
		if !bytes.HasSuffix(enc, []byte("\r\n")) {
			t.Fatalf("%d bytes: no final CRLF", n)
		}
		lines := bytes.Split(bytes.TrimSuffix(enc, []byte("\r\n")), []byte("\r\n"))
		for i, line := range lines {
			if len(line) > LineLength || i < len(lines)-1 && len(line) != LineLength {
				t.Fatalf("%d bytes: line %d of %d characters", n, i, len(line))
			}
		}
		got, err := DecodeStrict(enc)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%d bytes: round trip gave %x, %v", n, got, err)
		}
	}
}
