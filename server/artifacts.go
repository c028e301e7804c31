package server

import (
	"fmt"
	"path/filepath"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/artifacts"
	"github.com/steward-iot/steward/fsblob"
	"github.com/steward-iot/steward/tufrepo"
)

// newArtifacts sets up the artifact service: content in DataDir/blobs, and
// the tenants' TUF repositories with keys sealed under the master key.
func (s *Server) newArtifacts(masterKey []byte) error {
	blobs, err := fsblob.Open(filepath.Join(s.cfg.DataDir, "blobs"))
	if err != nil {
		return fmt.Errorf("artifact store: %w", err)
	}
	s.TUF, err = tufrepo.New(tufrepo.Config{Store: s.Store, MasterKey: masterKey, Clock: s.cfg.Clock, Logger: s.cfg.Logger})
	if err != nil {
		return err
	}
	var auditor steward.Auditor // nil, not a nil *audit.Log, when there is no log
	if s.Audit != nil {
		auditor = s.Audit
	}
	s.Artifacts = artifacts.New(artifacts.Config{Store: s.Store, Blobs: blobs, TUF: s.TUF, Auditor: auditor, Clock: s.cfg.Clock, Logger: s.cfg.Logger,
		MaxSize: s.cfg.MaxArtifactSize})
	return nil
}
