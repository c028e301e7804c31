package est

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/estwire"
)

func TestDecodeBody(t *testing.T) {
	t.Parallel()
	der := []byte{0x30, 0x82, 0x01, 0x0a, 0xff, 0x00, 0x7f}
	for _, tc := range []struct {
		name, body string
		want       []byte
		ok         bool
	}{
		{"padded", base64.StdEncoding.EncodeToString(der), der, true},
		{"unpadded", base64.RawStdEncoding.EncodeToString(der), der, true},
		{"CRLF lines", "MIIB\r\nCv8A\r\nfw==\r\n", der, true},
		{"spaces and tabs", " MIIB Cv8A\tfw== ", der, true},
		{"empty", "", []byte{}, true},
		{"only white space", "\r\n \t", []byte{}, true},
		{"URL alphabet", "MIIBCv8Afw__", nil, false},
		{"bad character", "MIIB*v8Afw==", nil, false},
		{"impossible length", "MIIBC", nil, false},
		{"padding inside", "MI==IBCv8A", nil, false},
		{"non-zero pad bits", "MIIBCv8Afx==", nil, false},
		{"PEM armour", "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeBody([]byte(tc.body))
			if !tc.ok {
				if steward.ErrorCode(err) != steward.CodeInvalid || !strings.Contains(steward.ErrorMessage(err), "not valid base64") {
					t.Fatalf("got %x, %v; want CodeInvalid", got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestEncodeBase64Lines(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 47, 48, 49, 96, 1000} {
		b := bytes.Repeat([]byte{0xa7}, n)
		enc := estwire.EncodeLines(b)
		if !bytes.HasSuffix(enc, []byte("\r\n")) {
			t.Fatalf("%d bytes: no final CRLF", n)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(enc, []byte("\r\n")), []byte("\r\n")) {
			if len(line) > estwire.LineLength {
				t.Fatalf("%d bytes: line of %d", n, len(line))
			}
		}
		got, err := decodeBody(enc)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%d bytes: round trip gave %x, %v", n, got, err)
		}
	}
}

// FuzzDecodeBody feeds arbitrary bodies to the request decoder: it must
// never panic, never return more than the body could hold, fail only with
// CodeInvalid, and whatever it accepts must survive our own encoding.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{
		"", "\r\n", "MIIBCv8Afw==", "MIIB\r\nCv8A\r\nfw==\r\n", "MIIBCv8Afw", "====", "A", "AA", "AAA=",
		"MIIB*v8Afw==", " \t\v\f", "QUFB\nQUFB\nQQ==", strings.Repeat("QUFB", 100),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := decodeBody(body)
		if err != nil {
			if steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("error with code %s: %v", steward.ErrorCode(err), err)
			}
			if out != nil {
				t.Fatal("output with an error")
			}
			return
		}
		if len(out) > len(body)*3/4+2 {
			t.Fatalf("%d bytes decoded from %d", len(out), len(body))
		}
		again, err := decodeBody(estwire.EncodeLines(out))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
		// Strict decoding: the accepted text is the canonical encoding of
		// what it decoded to, apart from white space and padding.
		clean := strings.Map(func(r rune) rune {
			if strings.ContainsRune(" \t\r\n\v\f=", r) {
				return -1
			}
			return r
		}, string(body))
		if canon := base64.RawStdEncoding.EncodeToString(out); canon != clean {
			t.Fatalf("accepted %q, canonical %q", clean, canon)
		}
	})
}
