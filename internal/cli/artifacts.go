package cli

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/tufrepo"
)

// uploadTimeout bounds a whole upload or signing session.
const uploadTimeout = 24 * time.Hour

func (e *env) artifactsCommand() *cobra.Command {
	g := group("artifacts", "Upload, list and delete artifacts; sign TUF targets with the release key", "artifact")
	g.AddCommand(e.artifactUploadCommand(), e.artifactListCommand(), e.artifactGetCommand(), e.artifactDeleteCommand(),
		e.artifactKeygenCommand(), e.artifactSignCommand(), e.artifactRootCommand(), e.artifactRotateRootCommand())
	return g
}

func artifactTable(w io.Writer, a steward.Artifact) error {
	k := newKV(w)
	k.add("ID", a.ID)
	k.add("Name", a.Name)
	k.add("Version", a.Version)
	k.add("Type", string(a.Type))
	k.add("SHA-256", a.SHA256)
	k.add("Size", strconv.FormatInt(a.Size, 10))
	k.add("TUF target", a.TargetPath())
	k.add("Models", joinOr(a.CompatibleModels, "any"))
	k.add("Min installed", a.MinInstalledVersion)
	k.add("Created", when(a.CreatedAt)+" by "+a.CreatedBy)
	if a.ReleaseNotes != "" {
		k.add("Release notes", a.ReleaseNotes)
	}
	return k.flush()
}

func (e *env) artifactUploadCommand() *cobra.Command {
	var (
		m              client.ArtifactMeta
		typ, notesFile string
		chunk          int64
		single         bool
		retries        int
	)
	cmd := &cobra.Command{
		Use:   "upload FILE --name NAME --version VERSION --type TYPE",
		Short: "Upload an artifact (resumable) and publish it as a TUF target",
		Long: `The file's SHA-256 is computed first and sent along, so the server refuses
content that arrives different. The upload goes in chunks (--chunk-size); a
chunk that fails is resumed from where the server stands, up to --retries
times in a row. In offline targets mode the artifact is stored but not
published: sign it with "steward artifacts sign".`,
		Example: `  steward artifacts upload gw-1.5.0.bin --name gw-firmware --version 1.5.0 --type firmware --model gw-100`,
		Args:    exactArgs("FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			m.Type = steward.ArtifactType(typ)
			if notesFile != "" {
				b, err := e.readInput(notesFile)
				if err != nil {
					return err
				}
				m.ReleaseNotes = string(b)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return usagef("open %s: %v", args[0], err)
			}
			defer f.Close()
			h := sha256.New()
			size, err := io.Copy(h, f)
			if err != nil {
				return fmt.Errorf("read %s: %w", args[0], err)
			}
			sum := hex.EncodeToString(h.Sum(nil))
			c, err := e.client(uploadTimeout)
			if err != nil {
				return err
			}
			var a client.PublishedArtifact
			if single {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				a, err = c.UploadArtifact(e.ctx, m, f, size, sum)
			} else {
				a, err = c.UploadResumable(e.ctx, m, f, size, sum, chunk, retries, nil)
			}
			if err != nil {
				return err
			}
			return e.emit(a, func(w io.Writer) error {
				if err := artifactTable(w, a.Artifact); err != nil {
					return err
				}
				if !a.Published {
					_, err := fmt.Fprintln(w, "Not published yet: offline targets mode; run steward artifacts sign --key RELEASE.key "+a.ID)
					return err
				}
				return nil
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&m.Name, "name", "", "artifact `NAME`")
	f.StringVar(&m.Version, "version", "", "artifact `VERSION`")
	f.StringVar(&typ, "type", "", "firmware, application or config-bundle")
	f.StringSliceVar(&m.CompatibleModels, "model", nil, "compatible device `MODEL` (repeatable; none means any)")
	f.StringVar(&m.MinInstalledVersion, "min-version", "", "oldest installed `VERSION` it upgrades from")
	f.StringVar(&notesFile, "notes-file", "", "read the release notes from `FILE` (- for stdin)")
	f.Int64Var(&chunk, "chunk-size", 8<<20, "bytes per chunk of a resumable upload")
	f.IntVar(&retries, "retries", 5, "failed chunks resumed in a row before giving up")
	f.BoolVar(&single, "single", false, "send the file in one request instead of a resumable upload")
	return cmd
}

func (e *env) artifactListCommand() *cobra.Command {
	var name, typ string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenant's artifacts",
		Args:  noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			var all []steward.Artifact
			after := ""
			for {
				page, next, err := c.ListArtifacts(e.ctx, steward.ArtifactFilter{Name: name, Type: steward.ArtifactType(typ), After: after, Limit: 1000})
				if err != nil {
					return err
				}
				all = append(all, page...)
				if next == "" {
					break
				}
				after = next
			}
			return emitList(e, all, func(w io.Writer, as []steward.Artifact) error {
				t := newTable(w, "ID", "NAME", "VERSION", "TYPE", "SIZE", "SHA-256", "CREATED")
				for _, a := range as {
					t.row(a.ID, a.Name, a.Version, string(a.Type), strconv.FormatInt(a.Size, 10), short(a.SHA256, 12), when(a.CreatedAt))
				}
				return t.flush()
			})
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "only this `NAME`")
	cmd.Flags().StringVar(&typ, "type", "", "only this `TYPE`")
	return cmd
}

func (e *env) artifactGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show an artifact",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			a, err := c.GetArtifact(e.ctx, args[0])
			if err != nil {
				return err
			}
			return e.emit(a, func(w io.Writer) error { return artifactTable(w, a) })
		}),
	}
}

func (e *env) artifactDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Withdraw an artifact's TUF target and delete it",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteArtifact(e.ctx, args[0]); err != nil {
				return err
			}
			return e.done("artifact %s deleted", args[0])
		}),
	}
}

func (e *env) artifactKeygenCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out RELEASE.key",
		Short: "Make a release key for offline targets mode",
		Long: `Writes an Ed25519 private key (PKCS #8 PEM, mode 0600) to --out and prints
its public key, which "steward artifacts rotate-root --release-key" makes the
only targets key. Keep the private key off the server.`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out FILE is required")
			}
			priv, err := tufrepo.GenerateKey()
			if err != nil {
				return err
			}
			pemKey, err := tufrepo.MarshalPrivateKey(priv)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return usagef("create %s: %v", out, err)
			}
			if _, err := f.Write(pemKey); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			pub, err := tufrepo.MarshalPublicKey(priv.Public().(ed25519.PublicKey))
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(pub)
			return err
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "write the private key to `FILE` (must not exist)")
	return cmd
}

func (e *env) artifactSignCommand() *cobra.Command {
	var (
		keyFile, out string
		remove       []string
		expires      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "sign --key RELEASE.key [ARTIFACT-ID…] [--remove NAME/VERSION…]",
		Short: "Sign the next targets metadata with the release key, here, and publish it",
		Long: `Offline targets mode: the server cannot sign targets. This command fetches
the current targets metadata and the named artifacts from the server, adds
them (and drops the --remove target paths), signs the result on this machine
with the release key, and uploads it; the server checks the signature and
that every target is an uploaded artifact, then publishes it. With --out it
only writes the signed metadata to a file.`,
		Example: `  steward artifacts sign --key release.key art-0c9d…`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return usagef("--key FILE is required")
			}
			b, err := os.ReadFile(keyFile)
			if err != nil {
				return usagef("read %s: %v", keyFile, err)
			}
			key, err := tufrepo.ParsePrivateKey(b)
			if err != nil {
				return usagef("%s: %v", keyFile, err)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			cur, err := c.TUFTargets(e.ctx)
			if err != nil {
				return err
			}
			var add []steward.Artifact
			for _, id := range args {
				a, err := c.GetArtifact(e.ctx, id)
				if err != nil {
					return err
				}
				add = append(add, a)
			}
			signed, err := tufrepo.SignTargets(cur, add, remove, key, time.Now().Add(expires))
			if err != nil {
				return err
			}
			if out != "" {
				return os.WriteFile(out, signed, 0o644)
			}
			if err := c.PublishTargets(e.ctx, signed); err != nil {
				return err
			}
			return e.done("targets signed and published (%d added, %d removed)", len(add), len(remove))
		}),
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "the release key `FILE` (steward artifacts keygen)")
	f.StringSliceVar(&remove, "remove", nil, "drop this target `PATH` (name/version; repeatable)")
	f.DurationVar(&expires, "expires", 365*24*time.Hour, "how long the signed targets stay valid")
	f.StringVar(&out, "out", "", "write the signed metadata to `FILE` instead of publishing it")
	return cmd
}

func (e *env) artifactRootCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "root",
		Short: "Print the tenant's TUF root metadata (a device's trust anchor)",
		Args:  noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			b, err := c.TUFRoot(e.ctx)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(append(b, '\n'))
			return err
		}),
	}
}

func (e *env) artifactRotateRootCommand() *cobra.Command {
	var releaseKey string
	var server bool
	cmd := &cobra.Command{
		Use:   "rotate-root [--release-key PUBLIC.pem | --server-targets]",
		Short: "Rotate the TUF root key; optionally move the targets role to a release key or back to the server",
		Long: `The new root is signed by the old root key and the new one, so devices
follow it. --release-key makes the given public key the only targets key:
offline targets mode, in which the server can no longer publish on its own;
sign targets at once with "steward artifacts sign" (devices accept no
targets until then). --server-targets goes back to a targets key the server
holds.`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			targets, pem := "", ""
			switch {
			case releaseKey != "" && server:
				return usagef("give --release-key or --server-targets, not both")
			case releaseKey != "":
				b, err := e.readInput(releaseKey)
				if err != nil {
					return err
				}
				targets, pem = "release", string(b)
			case server:
				targets = "server"
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			b, err := c.RotateTUFRoot(e.ctx, targets, pem)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(append(b, '\n'))
			return err
		}),
	}
	cmd.Flags().StringVar(&releaseKey, "release-key", "", "public key `FILE` of the release key (PEM)")
	cmd.Flags().BoolVar(&server, "server-targets", false, "give the targets role a new key the server holds (online mode)")
	return cmd
}
