package approvals

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// OperatorStore is what OperatorResolver reads: users, account tokens
// (with their scopes and expiry), the older API tokens, and custom roles.
type OperatorStore interface {
	GetUser(ctx context.Context, tenantID, id string) (steward.User, error)
	ListAccountTokens(ctx context.Context, tenantID string) ([]steward.AccountToken, error)
	ListTokens(ctx context.Context, tenantID string) ([]steward.APIToken, error)
	GetCustomRole(ctx context.Context, tenantID string, name steward.Role) (steward.CustomRole, error)
}

// OperatorResolver resolves "user:ID" (an enabled user, by its role) and
// "token:ID" (an unexpired account token, by its role narrowed by its
// scopes, or an API token by its role); built-in roles have their
// permissions, custom roles those stored with them.
type OperatorResolver struct {
	Store OperatorStore
	Clock steward.Clock
}

// Approver implements Resolver.
func (r OperatorResolver) Approver(ctx context.Context, tenantID, actor string) (Approver, error) {
	kind, id, _ := strings.Cut(actor, ":")
	unknown := steward.Errorf(steward.CodeNotFound, "approver %q is not known here", actor)
	if id == "" {
		return Approver{}, unknown
	}
	switch kind {
	case "user":
		u, err := r.Store.GetUser(ctx, tenantID, id)
		if steward.IsNotFound(err) || err == nil && u.Disabled {
			return Approver{}, unknown
		}
		if err != nil {
			return Approver{}, fmt.Errorf("look up approver: %w", err)
		}
		return r.role(ctx, tenantID, u.Role, nil)
	case "token":
		toks, err := r.Store.ListAccountTokens(ctx, tenantID)
		if err != nil {
			return Approver{}, fmt.Errorf("look up approver: %w", err)
		}
		now := time.Now()
		if r.Clock != nil {
			now = r.Clock.Now()
		}
		for _, t := range toks {
			if t.ID == id {
				if t.Expired(now) {
					return Approver{}, unknown
				}
				return r.role(ctx, tenantID, t.Role, t.Scopes)
			}
		}
		return TokenResolver{Store: r.Store}.Approver(ctx, tenantID, actor)
	}
	return Approver{}, unknown
}

// role returns the permissions of a role, narrowed to scopes when there
// are any.
func (r OperatorResolver) role(ctx context.Context, tenantID string, role steward.Role, scopes []steward.Permission) (Approver, error) {
	ps, ok := steward.RolePermissions(role)
	if !ok {
		cr, err := r.Store.GetCustomRole(ctx, tenantID, role)
		if err != nil && !steward.IsNotFound(err) {
			return Approver{}, fmt.Errorf("look up role %s: %w", role, err)
		}
		ps = cr.Permissions
	}
	if len(scopes) > 0 {
		ps = slices.DeleteFunc(ps, func(p steward.Permission) bool { return !slices.Contains(scopes, p) })
	}
	return Approver{Role: role, Permissions: ps}, nil
}
