package client_test

import (
	"context"
	"slices"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestOperators(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()

	r, err := c.CreateRole(ctx, client.RoleRequest{Name: "plant7", Permissions: []steward.Permission{steward.PermDevicesRead}, Query: "labels.site=plant-7"})
	if err != nil || r.Query != `labels.site = "plant-7"` {
		t.Fatalf("CreateRole = %+v, %v", r, err)
	}
	u, err := c.CreateUser(ctx, client.UserRequest{Email: "ada@example.com", Role: "plant7"})
	if err != nil || u.Role != "plant7" {
		t.Fatalf("CreateUser = %+v, %v", u, err)
	}
	if _, err := c.CreateUser(ctx, client.UserRequest{Email: "ada@example.com", Role: steward.RoleViewer}); steward.ErrorCode(err) != steward.CodeConflict {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, err := c.CreateUser(ctx, client.UserRequest{Email: "bob@example.com", Role: "wizard"}); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("unknown role: %v", err)
	}
	role := steward.RoleViewer
	if u, err = c.UpdateUser(ctx, u.ID, client.UserPatch{Role: &role}); err != nil || u.Role != steward.RoleViewer {
		t.Fatalf("UpdateUser = %+v, %v", u, err)
	}
	us, err := c.ListUsers(ctx)
	if err != nil || len(us) != 1 {
		t.Fatalf("ListUsers = %+v, %v", us, err)
	}
	tok, err := c.CreateUserToken(ctx, u.ID, client.AccountTokenRequest{Name: "laptop", Scopes: []steward.Permission{steward.PermDevicesRead}})
	if err != nil || tok.Secret == "" || tok.UserID != u.ID {
		t.Fatalf("CreateUserToken = %+v, %v", tok, err)
	}
	me, err := client.New(env.URL, tok.Secret, nil).Me(ctx)
	if err != nil || me.Role != steward.RoleViewer || !slices.Equal(me.Permissions, []steward.Permission{steward.PermDevicesRead}) {
		t.Fatalf("Me = %+v, %v", me, err)
	}
	toks, err := c.ListUserTokens(ctx, u.ID)
	if err != nil || len(toks) != 1 || toks[0].ID != tok.ID {
		t.Fatalf("ListUserTokens = %+v, %v", toks, err)
	}

	a, err := c.CreateServiceAccount(ctx, "ci", steward.RoleReleaseManager)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.CreateServiceAccountToken(ctx, a.ID, client.AccountTokenRequest{Name: "pipeline"})
	if err != nil || st.ServiceAccountID != a.ID || st.ExpiresAt == nil {
		t.Fatalf("CreateServiceAccountToken = %+v, %v", st, err)
	}
	if sts, err := c.ListServiceAccountTokens(ctx, a.ID); err != nil || len(sts) != 1 {
		t.Fatalf("ListServiceAccountTokens = %+v, %v", sts, err)
	}
	if as, err := c.ListServiceAccounts(ctx); err != nil || len(as) != 1 {
		t.Fatalf("ListServiceAccounts = %+v, %v", as, err)
	}
	rs, err := c.ListRoles(ctx)
	if err != nil || len(rs) != 8 {
		t.Fatalf("ListRoles = %d roles, %v", len(rs), err)
	}
	if _, err := c.UpdateRole(ctx, "plant7", client.RoleRequest{Permissions: []steward.Permission{steward.PermAlertsRead}}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{c.DeleteServiceAccount(ctx, a.ID), c.DeleteUser(ctx, u.ID), c.DeleteRole(ctx, "plant7")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GetUser(ctx, u.ID); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("deleted user: %v", err)
	}
}
