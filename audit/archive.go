package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// ArchiveFormat names an archive's format in its first line.
const ArchiveFormat = "steward-audit-archive/v1"

// ArchiveHeader is the first line of an archive: the records of one
// pruning, First to Last, each on a line after it as the canonical bytes
// the tree hashed. A line's leaf hash (tlog.RecordHash) is the hash the
// log keeps for its index, which an export lists and the checkpoints
// sign, so an archived record is checked against the log it left
// (VerifyArchive).
type ArchiveHeader struct {
	Format      string    `json:"format"`
	Log         string    `json:"log"`
	Origin      string    `json:"origin"`
	First       int64     `json:"first"`
	Last        int64     `json:"last"`
	Before      time.Time `json:"before"`
	VerifierKey string    `json:"verifier_key"`
	ArchivedAt  time.Time `json:"archived_at"`
}

// archive writes the records about to be pruned to a new file of the
// archive directory, durably, before their bodies are removed: a failure
// stops the pruning. The file is written under a temporary name and
// renamed, so that a crash leaves no partial archive under the final name;
// it is readable by its owner only, as the database is.
func (l *Log) archive(tenant string, es []steward.AuditEntry, before time.Time) error {
	if l.archiveDir == "" || len(es) == 0 {
		return nil
	}
	first, last := es[0].Record.Index, es[len(es)-1].Record.Index
	name := filepath.Join(l.archiveDir, fmt.Sprintf("audit-%s-%012d-%012d.jsonl", fileSafe(tenant), first, last))
	f, err := os.CreateTemp(l.archiveDir, ".audit-archive-*")
	if err != nil {
		return fmt.Errorf("archive audit records %d to %d: %w", first, last, err)
	}
	defer os.Remove(f.Name()) // once renamed, this removes nothing
	w := bufio.NewWriter(f)
	err = json.NewEncoder(w).Encode(ArchiveHeader{Format: ArchiveFormat, Log: tenant, Origin: Origin(tenant), First: first, Last: last,
		Before: before, VerifierKey: l.keys.VerifierKey, ArchivedAt: l.clock.Now().UTC()})
	for _, e := range es {
		if err != nil {
			break
		}
		if len(e.Data) == 0 || strings.ContainsAny(string(e.Data), "\r\n") {
			err = steward.Errorf(steward.CodeInternal, "audit record %d of %q cannot be archived as it is stored: run steward audit verify", e.Record.Index, tenant)
			break
		}
		if _, err = w.Write(e.Data); err == nil {
			err = w.WriteByte('\n')
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err == nil {
		err = syncDir(l.archiveDir)
	}
	if err != nil {
		return fmt.Errorf("archive audit records %d to %d: %w", first, last, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileSafe keeps the letters, digits, '-', '_' and '.' of s for a file
// name, and replaces the rest; the header names the log exactly.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
