// Package tufclient is the agent's update fetcher: it verifies an update
// target with The Update Framework (go-tuf v2's updater) against the
// tenant's root metadata, then downloads the target's content from the
// device plane over mTLS, resuming with HTTP Range after a cut connection,
// and checks its length and hashes before handing it to the installer.
//
// Anything that fails verification (signatures, thresholds, expiry,
// rollback to older metadata, a target not in the signed targets, wrong
// length or hash) is refused with an error wrapping agent.ErrNotTrusted,
// which the agent reports and never retries; the bytes are deleted. Network
// and disk errors are transient: the partial download is kept and the next
// attempt resumes it.
//
// The trusted root comes from the device plane once, right after the
// device enrolls (Bootstrap): the connection is authenticated both ways
// with the certificates enrollment produced. After that, root changes are
// accepted only as TUF allows them: signed by the old root's keys and the
// new ones.
package tufclient

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
)

// Config is what a Client works from.
type Config struct {
	// BaseURL is the device plane, e.g. https://steward.example.com:8443.
	BaseURL string
	// TenantID is the device's tenant (its repository is /tuf/{tenant}/).
	TenantID string
	// HTTPClient presents the device certificate and trusts the server
	// CA; its timeout, if any, must allow for whole downloads.
	HTTPClient *http.Client
	// Dir keeps the trusted metadata (metadata/), partial downloads
	// (partial/) and verified targets (targets/).
	Dir    string
	Clock  steward.Clock
	Logger *slog.Logger
}

// metadataTimeout bounds one TUF metadata request (a few KiB).
const metadataTimeout = time.Minute

// Client fetches and verifies update targets. It implements agent.Fetcher.
// Fetches are not meant to run concurrently (the agent runs one job at a
// time); two at once for the same target would share the partial file.
type Client struct {
	cfg Config
}

var _ agent.Fetcher = (*Client)(nil)

// New returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" || cfg.TenantID == "" || cfg.HTTPClient == nil || cfg.Dir == "" {
		return nil, errors.New("tufclient: BaseURL, TenantID, HTTPClient and Dir are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	for _, d := range []string{"metadata", "partial", "targets"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("tufclient: %w", err)
		}
	}
	return &Client{cfg: cfg}, nil
}

func (c *Client) rootPath() string { return filepath.Join(c.cfg.Dir, "metadata", "root.json") }

// Trusted reports whether the client has a trusted root.
func (c *Client) Trusted() bool {
	_, err := os.Stat(c.rootPath())
	return err == nil
}

// Bootstrap fetches the tenant's root metadata from the device plane
// (GET /.well-known/steward/tuf-root) and keeps it as the trust anchor,
// unless the client has one already: later roots come only through the
// TUF update, signed by the keys of the root before them.
func (c *Client) Bootstrap(ctx context.Context) error {
	if c.Trusted() {
		return nil
	}
	body, err := c.get(ctx, c.cfg.BaseURL+"/.well-known/steward/tuf-root", 512<<10)
	if err != nil {
		return fmt.Errorf("fetch tuf root: %w", err)
	}
	root, err := metadata.Root().FromBytes(body)
	if err != nil {
		return fmt.Errorf("tuf root does not parse: %w", err)
	}
	// A root must be signed by its own keys; this catches a damaged file.
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return fmt.Errorf("tuf root is not self-signed: %w", err)
	}
	return SetTrustedRoot(c.cfg.Dir, body)
}

// SetTrustedRoot installs root metadata as the trust anchor of the client
// state in dir (when the root reaches the device by other means, e.g. in
// the factory image).
func SetTrustedRoot(dir string, root []byte) error {
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o700); err != nil {
		return fmt.Errorf("tufclient: %w", err)
	}
	return renameio.WriteFile(filepath.Join(dir, "metadata", "root.json"), root, 0o600)
}

func (c *Client) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: more than %d bytes", u, limit)
	}
	return b, nil
}

// notTrusted wraps a verification failure so the agent treats it as final.
func notTrusted(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), agent.ErrNotTrusted)
}

// classify turns a go-tuf error into a final verification failure or a
// transient one. Everything the repository sent that did not verify is
// final; failing to reach it is not.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		dl  *metadata.ErrDownload
		val *metadata.ErrValue
		typ *metadata.ErrType
	)
	switch {
	case errors.Is(err, &metadata.ErrRepository{}), errors.As(err, &val), errors.As(err, &typ),
		errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		return fmt.Errorf("tuf verification failed: %v: %w", err, agent.ErrNotTrusted)
	case errors.As(err, &dl):
		return fmt.Errorf("tuf metadata download: %w", err)
	}
	return fmt.Errorf("tuf refresh: %w", err)
}

// Target resolves a target path through a fresh TUF refresh: root
// rotations, timestamp, snapshot and targets, each verified (signatures,
// thresholds, versions never going back, expiry by the injected clock).
func (c *Client) Target(ctx context.Context, path string) (*metadata.TargetFiles, error) {
	root, err := os.ReadFile(c.rootPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("tufclient: no trusted root yet (Bootstrap after enrolling)")
	}
	if err != nil {
		return nil, fmt.Errorf("read trusted root: %w", err)
	}
	cfg, err := config.New(c.cfg.BaseURL+"/tuf/"+url.PathEscape(c.cfg.TenantID), root)
	if err != nil {
		return nil, fmt.Errorf("tuf config: %w", err)
	}
	cfg.LocalMetadataDir = filepath.Join(c.cfg.Dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(c.cfg.Dir, "targets")
	// go-tuf's fetcher takes no context: bound each metadata request
	// instead, so a server that stops answering cannot hold the update.
	mc := *c.cfg.HTTPClient
	if mc.Timeout == 0 || mc.Timeout > metadataTimeout {
		mc.Timeout = metadataTimeout
	}
	if err := cfg.SetDefaultFetcherHTTPClient(&mc); err != nil {
		return nil, fmt.Errorf("tuf config: %w", err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, classify(err)
	}
	// go-tuf reads the wall clock once, when the updater is made; the
	// reference time comes from the injected clock instead, so freshness
	// is judged by the agent's notion of now.
	up.UnsafeSetRefTime(c.cfg.Clock.Now())
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, classify(err)
	}
	// After a successful refresh the top-level targets are trusted and
	// the repository has no delegations, so a miss is final.
	tf, err := up.GetTargetInfo(path)
	if err != nil {
		return nil, notTrusted("target %s is not in the signed targets (%v)", path, err)
	}
	return tf, nil
}

// Fetch implements agent.Fetcher: it resolves t.TUFPath with TUF, checks
// that the job's SHA-256 and length (when it gives them) are the signed
// ones, downloads the content (resuming a partial download) and verifies
// length and hashes. It returns the path of the verified file.
func (c *Client) Fetch(ctx context.Context, t agent.UpdateTarget, progress func(done, total int64)) (string, error) {
	if t.TUFPath == "" {
		return "", notTrusted("the job names no TUF target path")
	}
	tf, err := c.Target(ctx, t.TUFPath)
	if err != nil {
		return "", err
	}
	sum := hex.EncodeToString(tf.Hashes["sha256"])
	if len(tf.Hashes["sha256"]) != sha256.Size {
		return "", notTrusted("target %s has no SHA-256 in the signed targets", t.TUFPath)
	}
	if t.SHA256 != "" && !strings.EqualFold(t.SHA256, sum) {
		return "", notTrusted("target %s: the job's SHA-256 %s is not the signed %s", t.TUFPath, t.SHA256, sum)
	}
	if t.Length != 0 && t.Length != tf.Length {
		return "", notTrusted("target %s: the job's length %d is not the signed %d", t.TUFPath, t.Length, tf.Length)
	}
	return c.Download(ctx, tf, progress)
}

// Download fetches a verified target's content from the device plane
// (GET /artifacts/{sha256}) into the partial directory, resuming from what
// an earlier attempt left, and checks length and hashes against the
// signed target. On success the file moves to the targets directory.
func (c *Client) Download(ctx context.Context, tf *metadata.TargetFiles, progress func(done, total int64)) (string, error) {
	sum := hex.EncodeToString(tf.Hashes["sha256"])
	part := filepath.Join(c.cfg.Dir, "partial", sum)
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("open partial download: %w", err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", fmt.Errorf("partial download: %w", err)
	}
	if have > tf.Length {
		// More than the signed length: what is there is not this target.
		if err := f.Truncate(0); err != nil {
			return "", err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		have = 0
	}
	if have < tf.Length {
		if _, err = c.fetchRange(ctx, f, sum, have, tf.Length, progress); err != nil {
			if errors.Is(err, agent.ErrNotTrusted) {
				f.Close()
				os.Remove(part)
			}
			return "", err
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("partial download: %w", err)
	}
	if err := verifyFile(f, tf); err != nil {
		// Never keep bytes that failed: the next attempt starts over.
		f.Close()
		os.Remove(part)
		return "", err
	}
	name := filepath.Join(c.cfg.Dir, "targets", sum)
	if err := os.Rename(part, name); err != nil {
		return "", fmt.Errorf("keep verified download: %w", err)
	}
	c.cfg.Logger.Info("update target verified", "path", tf.Path, "sha256", sum, "length", tf.Length)
	return name, nil
}

// fetchRange appends bytes [have, length) of the artifact to f, asking
// for a Range when it resumes. It returns how many bytes f holds; on a
// transient error what arrived is kept (and synced) for the next attempt.
func (c *Client) fetchRange(ctx context.Context, f *os.File, sum string, have, length int64, progress func(done, total int64)) (int64, error) {
	u := c.cfg.BaseURL + "/artifacts/" + sum
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return have, err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		// Only the same bytes may continue a partial file.
		req.Header.Set("If-Range", `"`+sum+`"`)
	}
	res, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return have, fmt.Errorf("download %s: %w", sum, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusPartialContent && have > 0:
		start, err := rangeStart(res.Header.Get("Content-Range"))
		if err != nil || start != have {
			return have, fmt.Errorf("download %s: the server resumed at %q, not at %d", sum, res.Header.Get("Content-Range"), have)
		}
	case res.StatusCode == http.StatusOK:
		if have > 0 {
			// The server sent it all: start the file over.
			if err := f.Truncate(0); err != nil {
				return have, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return have, err
			}
			have = 0
		}
	default:
		return have, fmt.Errorf("download %s: %s", sum, res.Status)
	}
	buf := make([]byte, 256<<10)
	for have < length {
		want := int64(len(buf))
		if length-have < want {
			want = length - have
		}
		n, rerr := res.Body.Read(buf[:want])
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return have, fmt.Errorf("write download: %w", err)
			}
			have += int64(n)
			if progress != nil {
				progress(have, length)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = f.Sync() // keep what arrived for the resume
			return have, fmt.Errorf("download %s cut at %d of %d bytes: %w", sum, have, length, rerr)
		}
	}
	if have < length {
		_ = f.Sync()
		return have, fmt.Errorf("download %s ended at %d of %d bytes", sum, have, length)
	}
	// Anything past the signed length is refused by verifyFile's length check.
	if extra, _ := res.Body.Read(buf[:1]); extra > 0 {
		return have, notTrusted("download %s: the server sent more than the signed %d bytes", sum, length)
	}
	return have, nil
}

func rangeStart(cr string) (int64, error) {
	// "bytes START-END/TOTAL"
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", cr)
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", cr)
	}
	return strconv.ParseInt(start, 10, 64)
}

// verifyFile checks the file's length and every hash the signed target
// lists (streaming: targets may be larger than memory).
func verifyFile(f *os.File, tf *metadata.TargetFiles) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != tf.Length {
		return notTrusted("target %s is %d bytes, the signed length is %d", tf.Path, st.Size(), tf.Length)
	}
	if len(tf.Hashes) == 0 {
		return notTrusted("target %s has no hashes", tf.Path)
	}
	hs := map[string]hash.Hash{}
	var ws []io.Writer
	for alg := range tf.Hashes {
		var h hash.Hash
		switch alg {
		case "sha256":
			h = sha256.New()
		case "sha512":
			h = sha512.New()
		default:
			return notTrusted("target %s: unsupported hash %q", tf.Path, alg)
		}
		hs[alg] = h
		ws = append(ws, h)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(io.MultiWriter(ws...), f); err != nil {
		return fmt.Errorf("hash download: %w", err)
	}
	for alg, h := range hs {
		if got := h.Sum(nil); hex.EncodeToString(got) != hex.EncodeToString(tf.Hashes[alg]) {
			return notTrusted("target %s: %s is %x, the signed one is %x", tf.Path, alg, got, []byte(tf.Hashes[alg]))
		}
	}
	return nil
}
