package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func testTenants(t *testing.T, s steward.Store) {
	c := ctx(t)
	got, err := s.ListTenants(c)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("new store lists tenants %v", got)
	}
	_, err = s.GetTenant(c, tenantA)
	wantCode(t, err, steward.CodeNotFound)

	must(t, s.CreateTenant(c, steward.Tenant{ID: tenantB, Name: "B", CreatedAt: at(time.Hour)}))
	must(t, s.CreateTenant(c, steward.Tenant{ID: tenantA, Name: "A", CreatedAt: t0}))
	a, err := s.GetTenant(c, tenantA)
	must(t, err)
	if want := (steward.Tenant{ID: tenantA, Name: "A", Status: steward.TenantActive, CreatedAt: stored(t0)}); a != want {
		t.Fatalf("GetTenant = %+v, want %+v", a, want)
	}

	err = s.CreateTenant(c, steward.Tenant{ID: tenantA, Name: "A again", CreatedAt: t0})
	wantCode(t, err, steward.CodeConflict)
	err = s.CreateTenant(c, steward.Tenant{ID: "", Name: "nameless"})
	wantCode(t, err, steward.CodeInvalid)

	got, err = s.ListTenants(c)
	must(t, err)
	if len(got) != 2 || got[0].ID != tenantA || got[1].ID != tenantB || got[0].Name != "A" {
		t.Fatalf("ListTenants = %+v, want A (unchanged by the conflict) then B, and no nameless tenant", got)
	}
}

func testSecrets(t *testing.T, s steward.Store) {
	c := ctx(t)
	_, err := s.GetSecret(c, "ca-key")
	wantCode(t, err, steward.CodeNotFound)

	value := []byte{0, 1, 2, 0xff, 0, 'x'} // binary, with NULs
	must(t, s.CreateSecret(c, "ca-key", value))
	got, err := s.GetSecret(c, "ca-key")
	must(t, err)
	if !bytes.Equal(got, value) {
		t.Fatalf("GetSecret = %x, want %x", got, value)
	}

	// Two nodes starting at once: the second learns the name is taken
	// and the first value stays.
	err = s.CreateSecret(c, "ca-key", []byte("other"))
	wantCode(t, err, steward.CodeConflict)
	got, err = s.GetSecret(c, "ca-key")
	must(t, err)
	if !bytes.Equal(got, value) {
		t.Fatalf("after a conflicting create GetSecret = %x, want %x", got, value)
	}

	wantCode(t, s.CreateSecret(c, "", []byte("v")), steward.CodeInvalid)
	_, err = s.GetSecret(c, "")
	wantCode(t, err, steward.CodeNotFound)

	must(t, s.CreateSecret(c, "empty", nil))
	got, err = s.GetSecret(c, "empty")
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("empty secret = %x", got)
	}
}

func token(tenant, id string) steward.APIToken {
	return steward.APIToken{ID: id, TenantID: tenant, Name: "token " + id, Role: steward.RoleAdmin, Hash: "hash-" + id, CreatedAt: t0}
}

func testTokens(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	t1 := token(tenantA, "t1")
	t2 := token(tenantA, "t2")
	t2.CreatedAt = at(time.Minute)
	t2.Role = steward.RoleSystem
	must(t, s.CreateToken(c, t2))
	must(t, s.CreateToken(c, t1))

	got, err := s.TokenByHash(c, "hash-t1")
	must(t, err)
	want := t1
	want.CreatedAt = stored(t0)
	if got != want {
		t.Fatalf("TokenByHash = %+v, want %+v", got, want)
	}
	_, err = s.TokenByHash(c, "hash-none")
	wantCode(t, err, steward.CodeNotFound)

	list, err := s.ListTokens(c, tenantA)
	must(t, err)
	if len(list) != 2 || list[0].ID != "t1" || list[1].ID != "t2" || list[1].Role != steward.RoleSystem {
		t.Fatalf("ListTokens = %+v, want t1 then t2 (oldest first)", list)
	}

	t.Run("conflicts", func(t *testing.T) {
		dup := token(tenantA, "t3")
		dup.Hash = t1.Hash
		wantCode(t, s.CreateToken(c, dup), steward.CodeConflict)
		wantCode(t, s.CreateToken(c, token(tenantB, "t1")), steward.CodeConflict) // IDs are global
	})
	t.Run("invalid", func(t *testing.T) {
		bad := token(tenantA, "t4")
		bad.Hash = ""
		wantCode(t, s.CreateToken(c, bad), steward.CodeInvalid)
		wantCode(t, s.CreateToken(c, token("no-such-tenant", "t5")), steward.CodeNotFound)
		list, err := s.ListTokens(c, tenantA)
		must(t, err)
		if len(list) != 2 {
			t.Fatalf("refused tokens were written: %+v", list)
		}
	})

	must(t, s.DeleteToken(c, tenantA, "t1"))
	wantCode(t, s.DeleteToken(c, tenantA, "t1"), steward.CodeNotFound)
	_, err = s.TokenByHash(c, "hash-t1")
	wantCode(t, err, steward.CodeNotFound)
}

func testTokenIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateToken(c, token(tenantA, "ta")))

	list, err := s.ListTokens(c, tenantB)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists tenant A's tokens: %+v", list)
	}
	wantCode(t, s.DeleteToken(c, tenantB, "ta"), steward.CodeNotFound)
	if _, err := s.TokenByHash(c, "hash-ta"); err != nil {
		t.Fatalf("tenant B's delete removed tenant A's token: %v", err)
	}
}
