package artifacts

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/steward-iot/steward"
)

// Device plane paths.
const (
	// ArtifactsPath serves an artifact's content by its SHA-256:
	// GET /artifacts/{sha256}, with HTTP Range.
	ArtifactsPath = "/artifacts/"
	// TUFPath serves a tenant's TUF repository: GET
	// /tuf/{tenant}/{version}.root.json, timestamp.json,
	// {version}.snapshot.json, {version}.targets.json and
	// /tuf/{tenant}/targets/{name}/{sha256}.{version}.
	TUFPath = "/tuf/"
	// TUFRootPath serves the newest root metadata of the device's tenant:
	// the trust anchor an agent fetches once after it enrolls.
	TUFRootPath = "/.well-known/steward/tuf-root"
)

// Register adds the device plane handlers to mux. Every request must come
// with the device's client certificate (the listener asks for it), which
// gate checks as it does for MQTT: chain, validity, revocation, device not
// decommissioned.
func (s *Service) Register(mux *http.ServeMux, gate steward.DeviceGate) {
	d := &deviceHandler{s: s, gate: gate}
	mux.HandleFunc("GET "+ArtifactsPath+"{sha256}", d.artifact)
	mux.HandleFunc("GET "+TUFPath+"{tenant}/{file...}", d.tuf)
	mux.HandleFunc("GET "+TUFRootPath, d.root)
}

type deviceHandler struct {
	s    *Service
	gate steward.DeviceGate
}

// device authenticates the request's client certificate; it writes the
// error response and returns false when there is none or it fails.
func (d *deviceHandler) device(w http.ResponseWriter, r *http.Request) (steward.DeviceSession, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "a device certificate is required", http.StatusUnauthorized)
		return steward.DeviceSession{}, false
	}
	sess, err := d.gate.AuthenticateDevice(r.Context(), r.TLS.PeerCertificates[0], r.RemoteAddr)
	if err != nil {
		if steward.ErrorCode(err) == steward.CodeUnavailable || steward.ErrorCode(err) == steward.CodeInternal {
			d.s.cfg.Logger.Error("device plane: authenticate device", "err", err)
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return steward.DeviceSession{}, false
		}
		http.Error(w, "the device certificate is not accepted", http.StatusUnauthorized)
		return steward.DeviceSession{}, false
	}
	return sess, true
}

func (d *deviceHandler) fail(w http.ResponseWriter, err error) {
	switch steward.ErrorCode(err) {
	case steward.CodeNotFound, steward.CodeInvalid:
		http.Error(w, "not found", http.StatusNotFound)
	default:
		d.s.cfg.Logger.Error("device plane: artifacts", "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
	}
}

// artifact serves GET /artifacts/{sha256}: 404 unless the device was
// granted an artifact with that content, so a device cannot tell what
// exists beyond what it was given.
func (d *deviceHandler) artifact(w http.ResponseWriter, r *http.Request) {
	sess, ok := d.device(w, r)
	if !ok {
		return
	}
	d.serveGranted(w, r, sess, r.PathValue("sha256"), "")
}

// serveGranted serves the content of a digest the device was granted
// (and, when targetPath is set, whose artifact has that TUF target path).
func (d *deviceHandler) serveGranted(w http.ResponseWriter, r *http.Request, sess steward.DeviceSession, sum, targetPath string) {
	if !steward.ValidSHA256(sum) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	a, err := d.s.cfg.Store.GrantedArtifact(r.Context(), sess.TenantID, sess.DeviceID, sum)
	if err != nil {
		d.fail(w, err)
		return
	}
	if targetPath != "" && a.TargetPath() != targetPath {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	b, _, err := d.s.cfg.Blobs.Open(r.Context(), sum)
	if err != nil {
		d.fail(w, err)
		return
	}
	defer b.Close()
	// The digest is a strong validator: a resumed download's If-Range
	// matches only the same bytes.
	w.Header().Set("ETag", `"`+sum+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", a.CreatedAt, b)
}

// tuf serves the tenant's repository to its own devices.
func (d *deviceHandler) tuf(w http.ResponseWriter, r *http.Request) {
	sess, ok := d.device(w, r)
	if !ok {
		return
	}
	if r.PathValue("tenant") != sess.TenantID {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	file := r.PathValue("file")
	if rest, ok := strings.CutPrefix(file, "targets/"); ok {
		// targets/{dir}/{sha256}.{base}: consistent snapshots prefix the
		// target's base name with its hash.
		dir, base := "", rest
		if i := strings.LastIndexByte(rest, '/'); i >= 0 {
			dir, base = rest[:i+1], rest[i+1:]
		}
		sum, name, ok := strings.Cut(base, ".")
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		d.serveGranted(w, r, sess, sum, dir+name)
		return
	}
	role, version, err := metadataFile(file)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := d.s.cfg.TUF.Metadata(r.Context(), sess.TenantID, role, version)
	if err != nil {
		d.fail(w, err)
		return
	}
	writeMetadata(w, body)
}

// root serves GET /.well-known/steward/tuf-root.
func (d *deviceHandler) root(w http.ResponseWriter, r *http.Request) {
	sess, ok := d.device(w, r)
	if !ok {
		return
	}
	body, err := d.s.cfg.TUF.Metadata(r.Context(), sess.TenantID, steward.TUFRoot, 0)
	if err != nil {
		d.fail(w, err)
		return
	}
	writeMetadata(w, body)
}

func writeMetadata(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// metadataFile parses a TUF metadata file name: "timestamp.json" (the
// newest, version 0) or "{version}.{role}.json" for root, snapshot and
// targets, as consistent snapshots name them. Unversioned root, snapshot
// and targets are served too (the newest), for clients that ask so.
func metadataFile(file string) (role string, version int64, err error) {
	name, ok := strings.CutSuffix(file, ".json")
	if !ok {
		return "", 0, steward.Errorf(steward.CodeNotFound, "not metadata")
	}
	if v, r, ok := strings.Cut(name, "."); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || r == steward.TUFTimestamp {
			return "", 0, steward.Errorf(steward.CodeNotFound, "not metadata")
		}
		version, name = n, r
	}
	switch name {
	case steward.TUFRoot, steward.TUFTargets, steward.TUFSnapshot, steward.TUFTimestamp:
		return name, version, nil
	}
	return "", 0, steward.Errorf(steward.CodeNotFound, "not metadata")
}
