package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

func (e *env) configCommand() *cobra.Command {
	g := group("config", "Manage configuration: layered templates, versions, device twins and drift")
	g.AddCommand(e.configTemplatesCommand(), e.configVersionsCommand(), e.configDiffCommand(), e.configSetCommand(),
		e.configTwinCommand(), e.configDriftCommand())
	return g
}

func (e *env) configTemplatesCommand() *cobra.Command {
	g := group("templates", "Configuration templates, one per layer and selector", "template")
	var layer, selector, description string
	create := &cobra.Command{
		Use:   "create NAME --layer base|model|customer|site|device [--selector VALUE]",
		Short: "Create a configuration template",
		Long: `A template holds the configuration of one layer: the base (every device), a
model, a customer (the device's owner), a site, or one device (the selector
names which). Layers apply in that order, each a JSON merge patch over the
ones before. Its content is in its versions (steward config versions create).`,
		Example: `  steward config templates create base --layer base
  steward config templates create gateways --layer model --selector gw-100`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if !steward.ConfigLayer(layer).Valid() {
				return usagef("--layer %q: want base, model, customer, site or device", layer)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			t, err := c.CreateConfigTemplate(cmd.Context(), client.ConfigTemplateRequest{Name: args[0], Layer: steward.ConfigLayer(layer), Selector: selector, Description: description})
			if err != nil {
				return err
			}
			return e.emit(t, func(w io.Writer) error { return templateTable(w, t) })
		}),
	}
	create.Flags().StringVar(&layer, "layer", "", "`LAYER`: base, model, customer, site or device")
	create.Flags().StringVar(&selector, "selector", "", "the model, customer, site or device ID the template applies to (`VALUE`)")
	create.Flags().StringVar(&description, "description", "", "what the template is for (`TEXT`)")
	list := &cobra.Command{
		Use: "list", Short: "List the templates in the order their layers apply", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ts, err := c.ListConfigTemplates(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, ts, func(w io.Writer, ts []steward.ConfigTemplate) error {
				t := newTable(w, "ID", "NAME", "LAYER", "SELECTOR", "VERSION", "UPDATED")
				for _, x := range ts {
					t.row(x.ID, x.Name, string(x.Layer), x.Selector, strconv.Itoa(x.LatestVersion), when(x.UpdatedAt))
				}
				return t.flush()
			})
		}),
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show a template", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			t, err := c.GetConfigTemplate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(t, func(w io.Writer) error { return templateTable(w, t) })
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a template that has no versions", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteConfigTemplate(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted configuration template %s", args[0])
		}),
	}
	g.AddCommand(create, list, get, del)
	return g
}

func templateTable(w io.Writer, t steward.ConfigTemplate) error {
	k := newKV(w)
	k.add("ID", t.ID)
	k.add("Name", t.Name)
	k.add("Layer", string(t.Layer))
	k.add("Selector", t.Selector)
	k.add("Description", t.Description)
	k.add("Latest version", strconv.Itoa(t.LatestVersion))
	k.add("Updated", when(t.UpdatedAt))
	return k.flush()
}

func (e *env) configVersionsCommand() *cobra.Command {
	g := group("versions", "Immutable versions of a template", "version")
	var file, schema, message string
	create := &cobra.Command{
		Use:   "create TEMPLATE --file DOC.json -m MESSAGE [--schema SCHEMA.json]",
		Short: "Make a new version of a template (versions are never changed)",
		Long: `The document is a JSON object applied as a JSON merge patch (RFC 7386) over
the layers before the template's: a member set to null removes the key. A
schema (JSON Schema 2020-12) is checked against every device's merged
configuration while this version is part of it. The new version reaches
devices when it is rolled out: steward config set DEVICE --version ID, or a
deployment.`,
		Example: `  steward config versions create ct-… --file base.json --schema base.schema.json -m "first configuration"
  echo '{"log": "debug"}' | steward config versions create ct-… --file - -m "debug logs at paris"`,
		Args: exactArgs("TEMPLATE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if file == "" || strings.TrimSpace(message) == "" {
				return usagef("give the document with --file and a message with -m")
			}
			doc, err := e.readInput(file)
			if err != nil {
				return err
			}
			req := client.ConfigVersionRequest{Document: doc, Message: message}
			if schema != "" {
				if req.Schema, err = e.readInput(schema); err != nil {
					return err
				}
			}
			if !json.Valid(req.Document) || (req.Schema != nil && !json.Valid(req.Schema)) {
				return usagef("the document and the schema must be JSON")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			v, err := c.CreateConfigVersion(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return e.emit(v, func(w io.Writer) error { return versionTable(w, v) })
		}),
	}
	create.Flags().StringVarP(&file, "file", "f", "", "the document (`FILE`, - for stdin)")
	create.Flags().StringVar(&schema, "schema", "", "a JSON Schema (`FILE`) the merged configuration must satisfy")
	create.Flags().StringVarP(&message, "message", "m", "", "why (`TEXT`)")
	list := &cobra.Command{
		Use: "list TEMPLATE", Short: "List a template's versions, newest first", Args: exactArgs("TEMPLATE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			vs, err := c.ListConfigVersions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return emitList(e, vs, func(w io.Writer, vs []steward.ConfigVersion) error {
				t := newTable(w, "ID", "VERSION", "AUTHOR", "CREATED", "MESSAGE")
				for _, v := range vs {
					t.row(v.ID, strconv.Itoa(v.Version), v.Author, when(v.CreatedAt), short(v.Message, 60))
				}
				return t.flush()
			})
		}),
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show a version with its document", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			v, err := c.GetConfigVersion(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(v, func(w io.Writer) error { return versionTable(w, v) })
		}),
	}
	g.AddCommand(create, list, get)
	return g
}

func versionTable(w io.Writer, v steward.ConfigVersion) error {
	k := newKV(w)
	k.add("ID", v.ID)
	k.add("Template", v.TemplateID)
	k.add("Version", strconv.Itoa(v.Version))
	k.add("Layer", strings.TrimSpace(string(v.Layer)+" "+v.Selector))
	k.add("Author", v.Author)
	k.add("Created", when(v.CreatedAt))
	k.add("Message", v.Message)
	k.add("Document", string(v.Document))
	if len(v.Schema) > 0 {
		k.add("Schema", "yes")
	}
	return k.flush()
}

func (e *env) configDiffCommand() *cobra.Command {
	var against string
	cmd := &cobra.Command{
		Use:   "diff VERSION [--against VERSION]",
		Short: "Show what changed in a version, by path",
		Long: `Lists the changes from the --against version's document (default: the
version before in the same template) to VERSION's: add, remove or replace,
at a JSON pointer.`,
		Example: `  steward config diff cv-…
  steward config diff cv-new --against cv-old`,
		Args: exactArgs("VERSION"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ch, err := c.DiffConfigVersion(cmd.Context(), args[0], against)
			if err != nil {
				return err
			}
			return emitList(e, ch, func(w io.Writer, ch []steward.ConfigChange) error {
				if len(ch) == 0 {
					_, err := fmt.Fprintln(w, "no changes")
					return err
				}
				for _, c := range ch {
					var line string
					switch c.Op {
					case "add":
						line = fmt.Sprintf("+ %s: %s", c.Path, jsonText(c.Value))
					case "remove":
						line = fmt.Sprintf("- %s: %s", c.Path, jsonText(c.Old))
					default:
						line = fmt.Sprintf("~ %s: %s → %s", c.Path, jsonText(c.Old), jsonText(c.Value))
					}
					if _, err := fmt.Fprintln(w, line); err != nil {
						return err
					}
				}
				return nil
			})
		}),
	}
	cmd.Flags().StringVar(&against, "against", "", "the `VERSION` to compare with")
	return cmd
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func (e *env) configSetCommand() *cobra.Command {
	var patchFile, version string
	var ifMatch int64
	cmd := &cobra.Command{
		Use:   "set DEVICE (KEY=VALUE… | --patch FILE | --version VERSION) [--if-match N]",
		Short: "Change one device's desired configuration now",
		Long: `KEY=VALUE sets a top-level key (VALUE is JSON when it parses as JSON, else
text; KEY=null removes the key); --patch applies a JSON merge patch from a
file. Both change the device's own override, the layer over every template.
--version makes a configuration version part of the device's desired state.
With --if-match, a twin no longer at that desired version is not changed.`,
		Example: `  steward config set d-… interval=60 log=debug
  steward config set d-… --patch fix.json --if-match 4
  steward config set d-… --version cv-…`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%q needs DEVICE", cmd.CommandPath())
			}
			return nil
		},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			device, pairs := args[0], args[1:]
			modes := 0
			for _, b := range []bool{len(pairs) > 0, patchFile != "", version != ""} {
				if b {
					modes++
				}
			}
			if modes != 1 {
				return usagef("give KEY=VALUE pairs, --patch or --version (one of them)")
			}
			var match *int64
			if changed(cmd.Flags(), "if-match") {
				match = &ifMatch
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			var tw steward.Twin
			switch {
			case version != "":
				if match != nil {
					return usagef("--if-match goes with a patch, not --version")
				}
				tw, err = c.ApplyConfigVersion(cmd.Context(), device, version)
			default:
				var patch json.RawMessage
				if patchFile != "" {
					if patch, err = e.readInput(patchFile); err != nil {
						return err
					}
				} else if patch, err = pairsPatch(pairs); err != nil {
					return err
				}
				tw, err = c.PatchTwin(cmd.Context(), device, patch, match)
			}
			if err != nil {
				return err
			}
			return e.emit(tw, func(w io.Writer) error { return twinTable(w, tw) })
		}),
	}
	cmd.Flags().StringVar(&patchFile, "patch", "", "a JSON merge patch (`FILE`, - for stdin)")
	cmd.Flags().StringVar(&version, "version", "", "a configuration `VERSION` to apply")
	cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "the desired version (`N`) the change is made against")
	return cmd
}

// pairsPatch turns KEY=VALUE arguments into a merge patch.
func pairsPatch(pairs []string) (json.RawMessage, error) {
	patch := map[string]json.RawMessage{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("%q: want KEY=VALUE", p)
		}
		if _, dup := patch[k]; dup {
			return nil, usagef("key %q given twice", k)
		}
		if json.Valid([]byte(v)) {
			patch[k] = json.RawMessage(v)
		} else {
			b, _ := json.Marshal(v)
			patch[k] = b
		}
	}
	return json.Marshal(patch)
}

func (e *env) configTwinCommand() *cobra.Command {
	return &cobra.Command{
		Use: "twin DEVICE", Short: "Show a device's desired and reported configuration", Args: exactArgs("DEVICE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			tw, err := c.GetTwin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(tw, func(w io.Writer) error { return twinTable(w, tw) })
		}),
	}
}

func twinTable(w io.Writer, t steward.Twin) error {
	k := newKV(w)
	k.add("Device", t.DeviceID)
	k.add("Desired version", strconv.FormatInt(t.DesiredVersion, 10))
	k.add("Desired", string(t.Desired))
	var src []string
	for _, s := range t.Sources {
		src = append(src, fmt.Sprintf("%s %s v%d (%s)", s.Layer, s.TemplateID, s.Version, s.VersionID))
	}
	k.add("Built from", joinOr(src, "(no template)"))
	if len(t.Override) > 0 {
		k.add("Override", string(t.Override))
	}
	k.add("Reported version", strconv.FormatInt(t.ReportedVersion, 10))
	k.add("Reported", string(t.Reported))
	if len(t.ReportErrors) > 0 {
		keys := slices.Sorted(maps.Keys(t.ReportErrors))
		var errs []string
		for _, key := range keys {
			errs = append(errs, key+": "+t.ReportErrors[key])
		}
		k.add("Errors", strings.Join(errs, "; "))
	}
	k.add("In sync", yesNo(t.InSync()))
	k.add("Drifted", yesNo(t.Drifted))
	if t.DriftSince != nil {
		k.add("Differs since", when(*t.DriftSince))
	}
	return k.flush()
}

func (e *env) configDriftCommand() *cobra.Command {
	var after string
	var limit int
	cmd := &cobra.Command{
		Use: "drift", Short: "List the devices whose configuration drifted, and how many", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := c.Drift(cmd.Context(), after, limit)
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error {
				t := newTable(w, "DEVICE", "DESIRED", "REPORTED", "SINCE", "ERRORS")
				for _, x := range d.Items {
					since := ""
					if x.DriftSince != nil {
						since = when(*x.DriftSince)
					}
					t.row(x.DeviceID, strconv.FormatInt(x.DesiredVersion, 10), strconv.FormatInt(x.ReportedVersion, 10), since, strconv.Itoa(len(x.ReportErrors)))
				}
				if err := t.flush(); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "%d drifted devices\n", d.Count)
				return err
			})
		}),
	}
	cmd.Flags().StringVar(&after, "after", "", "list devices after this `DEVICE` ID (the next page)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most `N` devices (1 to 1000)")
	return cmd
}
