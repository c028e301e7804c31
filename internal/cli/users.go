package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

// operatorCommands are the commands of operators, roles and account
// tokens, added to the root in one place.
func (e *env) operatorCommands() []*cobra.Command {
	return []*cobra.Command{e.usersCommand(), e.serviceAccountsCommand(), e.rolesCommand(), e.whoamiCommand()}
}

func userTable(w io.Writer, us []steward.User) error {
	t := newTable(w, "ID", "EMAIL", "NAME", "ROLE", "DISABLED", "CREATED")
	for _, u := range us {
		t.row(u.ID, u.Email, u.Name, string(u.Role), yesNo(u.Disabled), when(u.CreatedAt))
	}
	return t.flush()
}

// parsePermissions reads a comma-separated list of permissions.
func parsePermissions(flag, s string) ([]steward.Permission, error) {
	var out []steward.Permission
	for _, p := range parseList(s) {
		if !steward.Permission(p).Valid() {
			return nil, usagef("--%s: unknown permission %q", flag, p)
		}
		out = append(out, steward.Permission(p))
	}
	return out, nil
}

// tokenFlags are the flags of the token subcommands.
type tokenFlags struct {
	scopes  string
	expires time.Duration
}

func (f *tokenFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.scopes, "scopes", "", "comma-separated permissions the token is narrowed to (default: all of the owner's)")
	cmd.Flags().DurationVar(&f.expires, "expires", 0, "lifetime of the token, e.g. 720h (default: the server's, 90 days)")
}

func (f *tokenFlags) request(name string) (client.AccountTokenRequest, error) {
	req := client.AccountTokenRequest{Name: name}
	var err error
	if req.Scopes, err = parsePermissions("scopes", f.scopes); err != nil {
		return req, err
	}
	if f.expires < 0 {
		return req, usagef("--expires must be positive")
	}
	if f.expires > 0 {
		t := time.Now().Add(f.expires).UTC()
		req.ExpiresAt = &t
	}
	return req, nil
}

func (e *env) emitCreatedToken(tok client.CreatedAccountToken) error {
	return e.emit(tok, func(w io.Writer) error {
		t := newTable(w, "ID", "NAME", "SCOPES", "EXPIRES", "SECRET")
		var scopes []string
		for _, s := range tok.Scopes {
			scopes = append(scopes, string(s))
		}
		exp := ""
		if tok.ExpiresAt != nil {
			exp = when(*tok.ExpiresAt)
		}
		t.row(tok.ID, tok.Name, joinOr(scopes, "all of the owner's"), exp, tok.Secret)
		if err := t.flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintln(e.stderr, "Keep the secret now: it is not shown again.")
		return err
	})
}

func (e *env) usersCommand() *cobra.Command {
	g := group("users", "Manage the operators of your tenant", "user")
	var role, name, passwordFile string
	create := &cobra.Command{
		Use:   "create EMAIL --role ROLE [--name NAME] [--password-file FILE]",
		Short: "Create a user",
		Long: `Create a user who logs in to the console. The password is read from a
file so that it stays out of the shell history and the process list; leave
it out for a user who logs in only through the tenant's OpenID Connect
provider. You can give only a role whose permissions you hold yourself.`,
		Example: `  steward users create ada@example.com --role owner --password-file ada.pw`,
		Args:    exactArgs("EMAIL"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usagef("--role is required")
			}
			req := client.UserRequest{Email: args[0], Name: name, Role: steward.Role(role)}
			if passwordFile != "" {
				pw, err := readSecret("password-file", passwordFile)
				if err != nil {
					return err
				}
				req.Password = pw
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), req)
			if err != nil {
				return err
			}
			return e.emit(u, func(w io.Writer) error { return userTable(w, []steward.User{u}) })
		}),
	}
	create.Flags().StringVar(&role, "role", "", "the user's role: a built-in role or a custom one")
	create.Flags().StringVar(&name, "name", "", "the user's display name")
	create.Flags().StringVar(&passwordFile, "password-file", "", "file holding the user's password (12 to 256 bytes)")
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			us, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, us, userTable)
		}),
	}
	patch := func(use, short string, mk func(args []string) (client.UserPatch, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: exactArgs(strings.Fields(use)[1:]...),
			RunE: run(func(cmd *cobra.Command, args []string) error {
				p, err := mk(args)
				if err != nil {
					return err
				}
				c, err := e.client(0)
				if err != nil {
					return err
				}
				u, err := c.UpdateUser(cmd.Context(), args[0], p)
				if err != nil {
					return err
				}
				return e.emit(u, func(w io.Writer) error { return userTable(w, []steward.User{u}) })
			}),
		}
	}
	setRole := patch("set-role ID ROLE", "Give a user another role (ends its sessions)", func(args []string) (client.UserPatch, error) {
		r := steward.Role(args[1])
		return client.UserPatch{Role: &r}, nil
	})
	disable := patch("disable ID", "Disable a user (ends its sessions; its tokens stop working)", func([]string) (client.UserPatch, error) {
		t := true
		return client.UserPatch{Disabled: &t}, nil
	})
	enable := patch("enable ID", "Enable a disabled user", func([]string) (client.UserPatch, error) {
		f := false
		return client.UserPatch{Disabled: &f}, nil
	})
	var newPasswordFile string
	setPassword := patch("set-password ID", "Set a user's password from --password-file (ends its sessions)", func([]string) (client.UserPatch, error) {
		if newPasswordFile == "" {
			return client.UserPatch{}, usagef("--password-file is required")
		}
		pw, err := readSecret("password-file", newPasswordFile)
		return client.UserPatch{Password: &pw}, err
	})
	setPassword.Flags().StringVar(&newPasswordFile, "password-file", "", "file holding the new password")
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a user with its sessions and tokens", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted user %s", args[0])
		}),
	}
	var tf tokenFlags
	token := &cobra.Command{
		Use: "token ID NAME [--scopes P,…] [--expires DURATION]", Short: "Create an API token of a user; its secret is shown once",
		Args: exactArgs("ID", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			req, err := tf.request(args[1])
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			tok, err := c.CreateUserToken(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return e.emitCreatedToken(tok)
		}),
	}
	tf.add(token)
	g.AddCommand(create, list, setRole, setPassword, disable, enable, del, token)
	return g
}

func (e *env) serviceAccountsCommand() *cobra.Command {
	g := group("service-accounts", "Manage service accounts, the non-person owners of API tokens", "service-account", "sa")
	var role string
	table := func(w io.Writer, as []steward.ServiceAccount) error {
		t := newTable(w, "ID", "NAME", "ROLE", "DISABLED", "CREATED")
		for _, a := range as {
			t.row(a.ID, a.Name, string(a.Role), yesNo(a.Disabled), when(a.CreatedAt))
		}
		return t.flush()
	}
	create := &cobra.Command{
		Use: "create NAME --role ROLE", Short: "Create a service account", Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usagef("--role is required")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			a, err := c.CreateServiceAccount(cmd.Context(), args[0], steward.Role(role))
			if err != nil {
				return err
			}
			return e.emit(a, func(w io.Writer) error { return table(w, []steward.ServiceAccount{a}) })
		}),
	}
	create.Flags().StringVar(&role, "role", "", "the account's role")
	list := &cobra.Command{
		Use: "list", Short: "List service accounts", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			as, err := c.ListServiceAccounts(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, as, table)
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a service account with its tokens", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteServiceAccount(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted service account %s", args[0])
		}),
	}
	var tf tokenFlags
	token := &cobra.Command{
		Use: "token ID NAME [--scopes P,…] [--expires DURATION]", Short: "Create an API token of a service account; its secret is shown once",
		Args: exactArgs("ID", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			req, err := tf.request(args[1])
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			tok, err := c.CreateServiceAccountToken(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return e.emitCreatedToken(tok)
		}),
	}
	tf.add(token)
	g.AddCommand(create, list, del, token)
	return g
}

func (e *env) rolesCommand() *cobra.Command {
	g := group("roles", "List roles and manage custom roles", "role")
	var perms, query, description string
	table := func(w io.Writer, rs []client.RoleInfo) error {
		t := newTable(w, "NAME", "BUILT-IN", "PERMISSIONS", "FLEET QUERY")
		for _, r := range rs {
			var ps []string
			for _, p := range r.Permissions {
				ps = append(ps, string(p))
			}
			t.row(string(r.Name), yesNo(r.Builtin), strings.Join(ps, ","), r.Query)
		}
		return t.flush()
	}
	list := &cobra.Command{
		Use: "list", Short: "List the built-in and custom roles with their permissions", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			rs, err := c.ListRoles(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, rs, table)
		}),
	}
	create := &cobra.Command{
		Use:     "create NAME --permissions P,… [--query FLEET-QUERY] [--description TEXT]",
		Short:   "Create a custom role, optionally limited to the devices a fleet query selects",
		Example: `  steward roles create plant7-ops --permissions devices:read,devices:quarantine --query 'labels.site = "plant-7"'`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			ps, err := parsePermissions("permissions", perms)
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				return usagef("--permissions is required")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			r, err := c.CreateRole(cmd.Context(), client.RoleRequest{Name: steward.Role(args[0]), Description: description, Permissions: ps, Query: query})
			if err != nil {
				return err
			}
			return e.emit(r, func(w io.Writer) error { return table(w, []client.RoleInfo{r}) })
		}),
	}
	create.Flags().StringVar(&perms, "permissions", "", "comma-separated permissions")
	create.Flags().StringVar(&query, "query", "", "fleet query limiting the role's devices (docs/query.md)")
	create.Flags().StringVar(&description, "description", "", "what the role is for")
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a custom role no one holds", Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteRole(cmd.Context(), steward.Role(args[0])); err != nil {
				return err
			}
			return e.done("deleted role %s", args[0])
		}),
	}
	g.AddCommand(list, create, del)
	return g
}

func (e *env) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use: "whoami", Short: "Show who your token is: tenant, role, permissions, fleet query", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			me, err := c.Me(cmd.Context())
			if err != nil {
				return err
			}
			return e.emit(me, func(w io.Writer) error {
				k := newKV(w)
				k.add("Tenant", me.TenantID)
				k.add("Actor", me.Actor)
				k.add("Role", string(me.Role))
				var ps []string
				for _, p := range me.Permissions {
					ps = append(ps, string(p))
				}
				k.add("Permissions", joinOr(ps, "none"))
				if me.FleetQuery != "" {
					k.add("Fleet query", me.FleetQuery)
				}
				return k.flush()
			})
		}),
	}
}
