package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/pki"
)

// newAuditLog opens the cluster's audit log. Its signing key is made on the
// first start of the first node and kept as a server secret sealed under
// the master key; the verifier key is logged at every start (and served at
// GET /api/v1/audit/key) so that operators can keep it where the server
// cannot change it.
// archiveDir, when set, keeps the records the audit log's retention
// prunes (Config.AuditArchive).
func newAuditLog(ctx context.Context, store steward.Store, masterKey []byte, clock steward.Clock, log *slog.Logger, archiveDir string) (*audit.Log, error) {
	kr, err := pki.NewKeyring(masterKey)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	keys, err := audit.LoadOrCreateKeys(ctx, store, kr)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if archiveDir != "" {
		if err := os.MkdirAll(archiveDir, 0o700); err != nil {
			return nil, fmt.Errorf("audit archive: %w", err)
		}
	}
	l, err := audit.New(audit.Config{Store: store, Keys: keys, Clock: clock, Logger: log, ArchiveDir: archiveDir})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	log.Info("audit log ready", "verifier_key", keys.VerifierKey)
	return l, nil
}
