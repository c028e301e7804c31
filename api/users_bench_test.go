package api

import (
	"net/http/httptest"
	"testing"

	"github.com/steward-iot/steward"
)

// BenchmarkPasswordHash is one argon2id hash at the default parameters:
// the cost of a login, and of every refused one.
func BenchmarkPasswordHash(b *testing.B) {
	for b.Loop() {
		if _, err := hashPassword("correct horse battery staple", DefaultArgon2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticate is the authentication of one request: an admin
// token (one lookup), and a service account's scoped token of a custom
// role (the token, its owner and the role), on SQLite.
func BenchmarkAuthenticate(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	cr := steward.CustomRole{TenantID: steward.DefaultTenant, Name: "plant7", Permissions: []steward.Permission{steward.PermDevicesRead},
		Query: `labels.site = "plant-7"`}
	a := steward.ServiceAccount{ID: "sa-bench", TenantID: steward.DefaultTenant, Name: "bench", Role: "plant7"}
	secret, hash, err := GenerateToken()
	if err != nil {
		b.Fatal(err)
	}
	tok := steward.AccountToken{APIToken: steward.APIToken{ID: "t-bench", TenantID: steward.DefaultTenant, Name: "bench", Role: "plant7", Hash: hash},
		ServiceAccountID: a.ID, Scopes: []steward.Permission{steward.PermDevicesRead}}
	for _, err := range []error{e.store.CreateCustomRole(ctx, cr), e.store.CreateServiceAccount(ctx, a), e.store.CreateAccountToken(ctx, tok)} {
		if err != nil {
			b.Fatal(err)
		}
	}
	account := secret
	for _, c := range []struct{ name, token string }{{"admin-token", e.system}, {"account-token", account}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/v1/devices", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			for b.Loop() {
				if _, err := e.api.authenticate(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
