package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// user returns a user of tenant with every field set.
func user(tenant, id, email string) steward.User {
	return steward.User{
		ID: id, TenantID: tenant, Email: email, Name: "User " + id, Role: steward.RoleOperator,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA",
		CreatedAt:    t0, UpdatedAt: at(time.Second),
	}
}

// normUser puts a user in the form a store returns it in.
func normUser(u steward.User) steward.User {
	u.CreatedAt, u.UpdatedAt, u.LockedUntil = stored(u.CreatedAt), stored(u.UpdatedAt), stored(u.LockedUntil)
	return u
}

func sameUser(t *testing.T, got, want steward.User) {
	t.Helper()
	if g, w := normUser(got), normUser(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("user differs:\n got %+v\nwant %+v", g, w)
	}
}

func testUsers(t *testing.T, s steward.Store) {
	setup(t, s)
	u := user(tenantA, "u-1", "ada@example.com")
	must(t, s.CreateUser(ctx(t), u))
	got, err := s.GetUser(ctx(t), tenantA, "u-1")
	must(t, err)
	sameUser(t, got, u)
	got, err = s.UserByEmail(ctx(t), tenantA, "  ADA@example.com ")
	must(t, err)
	sameUser(t, got, u)

	// The email is unique in a tenant, not across tenants.
	wantCode(t, s.CreateUser(ctx(t), user(tenantA, "u-2", "ada@example.com")), steward.CodeConflict)
	wantCode(t, s.CreateUser(ctx(t), user(tenantA, "u-1", "other@example.com")), steward.CodeConflict)
	must(t, s.CreateUser(ctx(t), user(tenantB, "u-1", "ada@example.com")))
	wantCode(t, s.CreateUser(ctx(t), user("no-such-tenant", "u-9", "x@example.com")), steward.CodeNotFound)
	wantCode(t, s.CreateUser(ctx(t), user(tenantA, "u-9", "")), steward.CodeInvalid)
	us, err := s.ListUsers(ctx(t), tenantA)
	must(t, err)
	if len(us) != 1 || us[0].ID != "u-1" {
		t.Fatalf("users of A after refused creates: %+v", us)
	}

	// Update writes the mutable fields; the OIDC subject is unique too.
	u.Name, u.Role, u.Disabled, u.PasswordHash, u.OIDCSubject, u.UpdatedAt = "Ada L.", steward.RoleViewer, true, "", "https://idp|ada", at(time.Minute)
	must(t, s.UpdateUser(ctx(t), u))
	got, err = s.UserByOIDCSubject(ctx(t), tenantA, "https://idp|ada")
	must(t, err)
	sameUser(t, got, u)
	_, err = s.UserByOIDCSubject(ctx(t), tenantB, "https://idp|ada")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.UserByOIDCSubject(ctx(t), tenantA, "")
	wantCode(t, err, steward.CodeNotFound)
	u2 := user(tenantA, "u-2", "bob@example.com")
	must(t, s.CreateUser(ctx(t), u2))
	u2.OIDCSubject = "https://idp|ada"
	wantCode(t, s.UpdateUser(ctx(t), u2), steward.CodeConflict)
	wantCode(t, s.UpdateUser(ctx(t), user(tenantB, "u-2", "bob@example.com")), steward.CodeNotFound)

	// Login failures and the lockout end.
	must(t, s.SetLoginFailures(ctx(t), tenantA, "u-1", 6, at(time.Hour)))
	got, err = s.GetUser(ctx(t), tenantA, "u-1")
	must(t, err)
	if got.FailedLogins != 6 || !got.LockedUntil.Equal(stored(at(time.Hour))) {
		t.Fatalf("failures %d until %v", got.FailedLogins, got.LockedUntil)
	}
	must(t, s.SetLoginFailures(ctx(t), tenantA, "u-1", 0, time.Time{}))
	got, _ = s.GetUser(ctx(t), tenantA, "u-1")
	if got.FailedLogins != 0 || !got.LockedUntil.IsZero() {
		t.Fatalf("failures not cleared: %d until %v", got.FailedLogins, got.LockedUntil)
	}
	wantCode(t, s.SetLoginFailures(ctx(t), tenantB, "u-2", 1, time.Time{}), steward.CodeNotFound)

	// Tenant B sees none of A's users.
	_, err = s.GetUser(ctx(t), tenantB, "u-2")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteUser(ctx(t), tenantB, "u-2"), steward.CodeNotFound)
	must(t, s.DeleteUser(ctx(t), tenantA, "u-2"))
	wantCode(t, s.DeleteUser(ctx(t), tenantA, "u-2"), steward.CodeNotFound)
	us, _ = s.ListUsers(ctx(t), tenantB)
	if len(us) != 1 {
		t.Fatalf("users of B: %+v", us)
	}
}

func testServiceAccounts(t *testing.T, s steward.Store) {
	setup(t, s)
	a := steward.ServiceAccount{ID: "sa-1", TenantID: tenantA, Name: "ci", Role: steward.RoleReleaseManager, CreatedAt: t0}
	must(t, s.CreateServiceAccount(ctx(t), a))
	got, err := s.GetServiceAccount(ctx(t), tenantA, "sa-1")
	must(t, err)
	a.CreatedAt = stored(a.CreatedAt)
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("got %+v, want %+v", got, a)
	}
	wantCode(t, s.CreateServiceAccount(ctx(t), steward.ServiceAccount{ID: "sa-2", TenantID: tenantA, Name: "ci", Role: steward.RoleViewer, CreatedAt: t0}), steward.CodeConflict)
	wantCode(t, s.CreateServiceAccount(ctx(t), steward.ServiceAccount{ID: "sa-3", TenantID: tenantA, Name: "", Role: steward.RoleViewer, CreatedAt: t0}), steward.CodeInvalid)
	_, err = s.GetServiceAccount(ctx(t), tenantB, "sa-1")
	wantCode(t, err, steward.CodeNotFound)
	as, err := s.ListServiceAccounts(ctx(t), tenantA)
	must(t, err)
	if len(as) != 1 {
		t.Fatalf("service accounts: %+v", as)
	}
	wantCode(t, s.DeleteServiceAccount(ctx(t), tenantB, "sa-1"), steward.CodeNotFound)
	must(t, s.DeleteServiceAccount(ctx(t), tenantA, "sa-1"))
	as, _ = s.ListServiceAccounts(ctx(t), tenantA)
	if len(as) != 0 {
		t.Fatalf("service accounts after delete: %+v", as)
	}
}

func testCustomRoles(t *testing.T, s steward.Store) {
	setup(t, s)
	r := steward.CustomRole{TenantID: tenantA, Name: "plant7-ops", Description: "operators of plant 7",
		Permissions: []steward.Permission{steward.PermDevicesRead, steward.PermDevicesQuarantine},
		Query:       `labels.site = "plant-7"`, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateCustomRole(ctx(t), r))
	got, err := s.GetCustomRole(ctx(t), tenantA, "plant7-ops")
	must(t, err)
	r.CreatedAt, r.UpdatedAt = stored(r.CreatedAt), stored(r.UpdatedAt)
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v, want %+v", got, r)
	}
	wantCode(t, s.CreateCustomRole(ctx(t), r), steward.CodeConflict)
	_, err = s.GetCustomRole(ctx(t), tenantB, "plant7-ops")
	wantCode(t, err, steward.CodeNotFound)

	r.Permissions, r.Query, r.UpdatedAt = []steward.Permission{steward.PermDevicesRead}, "", at(time.Hour)
	must(t, s.UpdateCustomRole(ctx(t), r))
	rs, err := s.ListCustomRoles(ctx(t), tenantA)
	must(t, err)
	if len(rs) != 1 || len(rs[0].Permissions) != 1 || rs[0].Query != "" || !rs[0].UpdatedAt.Equal(stored(at(time.Hour))) {
		t.Fatalf("roles after update: %+v", rs)
	}
	other := r
	other.TenantID = tenantB
	wantCode(t, s.UpdateCustomRole(ctx(t), other), steward.CodeNotFound)

	// A role held by someone cannot go.
	u := user(tenantA, "u-1", "ada@example.com")
	u.Role = "plant7-ops"
	must(t, s.CreateUser(ctx(t), u))
	wantCode(t, s.DeleteCustomRole(ctx(t), tenantA, "plant7-ops"), steward.CodeConflict)
	u.Role, u.UpdatedAt = steward.RoleViewer, at(time.Hour)
	must(t, s.UpdateUser(ctx(t), u))
	must(t, s.CreateServiceAccount(ctx(t), steward.ServiceAccount{ID: "sa-1", TenantID: tenantA, Name: "ci", Role: "plant7-ops", CreatedAt: t0}))
	wantCode(t, s.DeleteCustomRole(ctx(t), tenantA, "plant7-ops"), steward.CodeConflict)
	must(t, s.DeleteServiceAccount(ctx(t), tenantA, "sa-1"))
	wantCode(t, s.DeleteCustomRole(ctx(t), tenantB, "plant7-ops"), steward.CodeNotFound)
	must(t, s.DeleteCustomRole(ctx(t), tenantA, "plant7-ops"))
	wantCode(t, s.DeleteCustomRole(ctx(t), tenantA, "plant7-ops"), steward.CodeNotFound)
}

func testCustomRolesInvalid(t *testing.T, s steward.Store) {
	setup(t, s)
	good := steward.CustomRole{TenantID: tenantA, Name: "ops", Permissions: []steward.Permission{steward.PermDevicesRead}, CreatedAt: t0, UpdatedAt: t0}
	for name, mut := range map[string]func(r *steward.CustomRole){
		"built-in name":  func(r *steward.CustomRole) { r.Name = steward.RoleAdmin },
		"bad name":       func(r *steward.CustomRole) { r.Name = "Ops Team" },
		"no permissions": func(r *steward.CustomRole) { r.Permissions = nil },
		"unknown":        func(r *steward.CustomRole) { r.Permissions = []steward.Permission{"devices:fly"} },
		"tenants:admin":  func(r *steward.CustomRole) { r.Permissions = []steward.Permission{steward.PermTenantsAdmin} },
		"repeated": func(r *steward.CustomRole) {
			r.Permissions = []steward.Permission{steward.PermDevicesRead, steward.PermDevicesRead}
		},
		"no tenant":      func(r *steward.CustomRole) { r.TenantID = "" },
		"unknown tenant": func(r *steward.CustomRole) { r.TenantID = "no-such-tenant" },
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			mut(&r)
			err := s.CreateCustomRole(ctx(t), r)
			if err == nil {
				t.Fatal("accepted")
			}
			if c := steward.ErrorCode(err); c != steward.CodeInvalid && c != steward.CodeNotFound {
				t.Fatalf("code %s: %v", c, err)
			}
		})
	}
	rs, err := s.ListCustomRoles(ctx(t), tenantA)
	must(t, err)
	if len(rs) != 0 {
		t.Fatalf("refused roles were stored: %+v", rs)
	}
}

func testSessions(t *testing.T, s steward.Store) {
	setup(t, s)
	must(t, s.CreateUser(ctx(t), user(tenantA, "u-1", "ada@example.com")))
	x := steward.Session{Hash: "h1", TenantID: tenantA, UserID: "u-1", CreatedAt: t0, LastSeen: t0, ExpiresAt: at(8 * time.Hour)}
	must(t, s.CreateSession(ctx(t), x))
	wantCode(t, s.CreateSession(ctx(t), steward.Session{Hash: "h2", TenantID: tenantB, UserID: "u-1", CreatedAt: t0, LastSeen: t0, ExpiresAt: t0}), steward.CodeNotFound)
	got, err := s.SessionByHash(ctx(t), "h1")
	must(t, err)
	want := x
	want.CreatedAt, want.LastSeen, want.ExpiresAt = stored(x.CreatedAt), stored(x.LastSeen), stored(x.ExpiresAt)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Last seen moves forward only.
	must(t, s.TouchSession(ctx(t), "h1", at(time.Hour)))
	must(t, s.TouchSession(ctx(t), "h1", at(time.Minute)))
	got, _ = s.SessionByHash(ctx(t), "h1")
	if !got.LastSeen.Equal(stored(at(time.Hour))) {
		t.Fatalf("last seen %v", got.LastSeen)
	}
	must(t, s.CreateSession(ctx(t), steward.Session{Hash: "h3", TenantID: tenantA, UserID: "u-1", CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Minute)}))
	n, err := s.DeleteExpiredSessions(ctx(t), at(time.Hour))
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d expired sessions, want 1", n)
	}
	_, err = s.SessionByHash(ctx(t), "h3")
	wantCode(t, err, steward.CodeNotFound)

	must(t, s.DeleteSession(ctx(t), "h1"))
	must(t, s.DeleteSession(ctx(t), "h1"))
	_, err = s.SessionByHash(ctx(t), "h1")
	wantCode(t, err, steward.CodeNotFound)

	// Ending a user's sessions, and deleting the user, end them all.
	must(t, s.CreateSession(ctx(t), steward.Session{Hash: "h4", TenantID: tenantA, UserID: "u-1", CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
	must(t, s.DeleteUserSessions(ctx(t), tenantA, "u-1"))
	_, err = s.SessionByHash(ctx(t), "h4")
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.CreateSession(ctx(t), steward.Session{Hash: "h5", TenantID: tenantA, UserID: "u-1", CreatedAt: t0, LastSeen: t0, ExpiresAt: at(time.Hour)}))
	must(t, s.DeleteUser(ctx(t), tenantA, "u-1"))
	_, err = s.SessionByHash(ctx(t), "h5")
	wantCode(t, err, steward.CodeNotFound)
}

func testAccountTokens(t *testing.T, s steward.Store) {
	setup(t, s)
	must(t, s.CreateUser(ctx(t), user(tenantA, "u-1", "ada@example.com")))
	must(t, s.CreateServiceAccount(ctx(t), steward.ServiceAccount{ID: "sa-1", TenantID: tenantA, Name: "ci", Role: steward.RoleViewer, CreatedAt: t0}))
	exp := at(24 * time.Hour)
	ut := steward.AccountToken{
		APIToken:  steward.APIToken{ID: "t-user", TenantID: tenantA, Name: "laptop", Role: steward.RoleOperator, Hash: "hash-user", CreatedAt: t0},
		UserID:    "u-1",
		Scopes:    []steward.Permission{steward.PermDevicesRead},
		ExpiresAt: &exp,
	}
	must(t, s.CreateAccountToken(ctx(t), ut))
	st := steward.AccountToken{
		APIToken:         steward.APIToken{ID: "t-sa", TenantID: tenantA, Name: "pipeline", Role: steward.RoleViewer, Hash: "hash-sa", CreatedAt: at(time.Second)},
		ServiceAccountID: "sa-1",
	}
	must(t, s.CreateAccountToken(ctx(t), st))
	must(t, s.CreateToken(ctx(t), steward.APIToken{ID: "t-admin", TenantID: tenantA, Name: "admin", Role: steward.RoleAdmin, Hash: "hash-admin", CreatedAt: at(2 * time.Second)}))

	got, err := s.AccountTokenByHash(ctx(t), "hash-user")
	must(t, err)
	want := ut
	want.CreatedAt = stored(want.CreatedAt)
	e := stored(exp)
	want.ExpiresAt = &e
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	got, err = s.AccountTokenByHash(ctx(t), "hash-admin")
	must(t, err)
	if got.UserID != "" || got.ServiceAccountID != "" || len(got.Scopes) != 0 || got.ExpiresAt != nil || got.Role != steward.RoleAdmin {
		t.Fatalf("an admin token reads back with an owner or limits: %+v", got)
	}
	// The older API still sees every token.
	legacy, err := s.TokenByHash(ctx(t), "hash-sa")
	must(t, err)
	if legacy.ID != "t-sa" {
		t.Fatalf("token by hash: %+v", legacy)
	}
	toks, err := s.ListAccountTokens(ctx(t), tenantA)
	must(t, err)
	if len(toks) != 3 || toks[0].ID != "t-user" || toks[1].ServiceAccountID != "sa-1" || toks[2].ID != "t-admin" {
		t.Fatalf("tokens: %+v", toks)
	}

	// Bad tokens are refused and change nothing.
	for name, tok := range map[string]steward.AccountToken{
		"owner in another tenant": {APIToken: steward.APIToken{ID: "t-x1", TenantID: tenantB, Name: "x", Role: steward.RoleViewer, Hash: "hx1", CreatedAt: t0}, UserID: "u-1"},
		"unknown account":         {APIToken: steward.APIToken{ID: "t-x2", TenantID: tenantA, Name: "x", Role: steward.RoleViewer, Hash: "hx2", CreatedAt: t0}, ServiceAccountID: "sa-9"},
		"two owners":              {APIToken: steward.APIToken{ID: "t-x3", TenantID: tenantA, Name: "x", Role: steward.RoleViewer, Hash: "hx3", CreatedAt: t0}, UserID: "u-1", ServiceAccountID: "sa-1"},
		"unknown scope":           {APIToken: steward.APIToken{ID: "t-x4", TenantID: tenantA, Name: "x", Role: steward.RoleViewer, Hash: "hx4", CreatedAt: t0}, UserID: "u-1", Scopes: []steward.Permission{"devices:fly"}},
		"hash taken":              {APIToken: steward.APIToken{ID: "t-x5", TenantID: tenantA, Name: "x", Role: steward.RoleViewer, Hash: "hash-sa", CreatedAt: t0}, UserID: "u-1"},
	} {
		if err := s.CreateAccountToken(ctx(t), tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	toks, _ = s.ListAccountTokens(ctx(t), tenantA)
	btoks, _ := s.ListAccountTokens(ctx(t), tenantB)
	if len(toks) != 3 || len(btoks) != 0 {
		t.Fatalf("refused tokens were stored: %+v %+v", toks, btoks)
	}

	// Deleting an owner deletes its tokens, and only its.
	must(t, s.DeleteUser(ctx(t), tenantA, "u-1"))
	_, err = s.AccountTokenByHash(ctx(t), "hash-user")
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.DeleteServiceAccount(ctx(t), tenantA, "sa-1"))
	_, err = s.AccountTokenByHash(ctx(t), "hash-sa")
	wantCode(t, err, steward.CodeNotFound)
	toks, _ = s.ListAccountTokens(ctx(t), tenantA)
	if len(toks) != 1 || toks[0].ID != "t-admin" {
		t.Fatalf("tokens after the owners went: %+v", toks)
	}
}
