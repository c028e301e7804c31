package client

import (
	"context"
	"net/http"
	"time"

	"github.com/steward-iot/steward"
)

// UserRequest creates a user. Password may be empty for a user who logs in
// only through the tenant's OpenID Connect provider.
type UserRequest struct {
	Email    string       `json:"email"`
	Name     string       `json:"name,omitempty"`
	Role     steward.Role `json:"role"`
	Password string       `json:"password,omitempty"`
	Disabled bool         `json:"disabled,omitempty"`
}

// UserPatch changes a user; nil fields stay.
type UserPatch struct {
	Name     *string       `json:"name,omitempty"`
	Role     *steward.Role `json:"role,omitempty"`
	Password *string       `json:"password,omitempty"`
	Disabled *bool         `json:"disabled,omitempty"`
}

// Me describes the caller.
type Me struct {
	TenantID         string               `json:"tenant_id"`
	Actor            string               `json:"actor"`
	User             *steward.User        `json:"user,omitempty"`
	ServiceAccountID string               `json:"service_account_id,omitempty"`
	TokenID          string               `json:"token_id,omitempty"`
	Role             steward.Role         `json:"role"`
	Permissions      []steward.Permission `json:"permissions"`
	FleetQuery       string               `json:"fleet_query,omitempty"`
}

// Me returns who the caller is: role, effective permissions, fleet query.
func (c *Client) Me(ctx context.Context) (Me, error) {
	var out Me
	err := c.do(ctx, http.MethodGet, "/api/v1/me", nil, nil, &out)
	return out, err
}

// CreateUser creates a user of the caller's tenant.
func (c *Client) CreateUser(ctx context.Context, req UserRequest) (steward.User, error) {
	var out steward.User
	err := c.do(ctx, http.MethodPost, "/api/v1/users", nil, req, &out)
	return out, err
}

// ListUsers returns the tenant's users, by email.
func (c *Client) ListUsers(ctx context.Context) ([]steward.User, error) {
	var out list[steward.User]
	err := c.do(ctx, http.MethodGet, "/api/v1/users", nil, nil, &out)
	return out.Items, err
}

// GetUser returns a user.
func (c *Client) GetUser(ctx context.Context, id string) (steward.User, error) {
	var out steward.User
	err := c.do(ctx, http.MethodGet, "/api/v1/users/"+seg(id), nil, nil, &out)
	return out, err
}

// UpdateUser changes a user's name, role, password or disabled flag.
func (c *Client) UpdateUser(ctx context.Context, id string, p UserPatch) (steward.User, error) {
	var out steward.User
	err := c.do(ctx, http.MethodPatch, "/api/v1/users/"+seg(id), nil, p, &out)
	return out, err
}

// DeleteUser deletes a user with its sessions and tokens.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/users/"+seg(id), nil, nil, nil)
}

// CreateServiceAccount creates a service account holding role.
func (c *Client) CreateServiceAccount(ctx context.Context, name string, role steward.Role) (steward.ServiceAccount, error) {
	var out steward.ServiceAccount
	err := c.do(ctx, http.MethodPost, "/api/v1/service-accounts", nil, map[string]any{"name": name, "role": role}, &out)
	return out, err
}

// ListServiceAccounts returns the tenant's service accounts, by name.
func (c *Client) ListServiceAccounts(ctx context.Context) ([]steward.ServiceAccount, error) {
	var out list[steward.ServiceAccount]
	err := c.do(ctx, http.MethodGet, "/api/v1/service-accounts", nil, nil, &out)
	return out.Items, err
}

// DeleteServiceAccount deletes a service account with its tokens.
func (c *Client) DeleteServiceAccount(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/service-accounts/"+seg(id), nil, nil, nil)
}

// AccountTokenRequest creates a token of a user or service account. Empty
// Scopes means all of the owner's permissions; a nil ExpiresAt, the
// server's default (90 days).
type AccountTokenRequest struct {
	Name      string               `json:"name"`
	Scopes    []steward.Permission `json:"scopes,omitempty"`
	ExpiresAt *time.Time           `json:"expires_at,omitempty"`
}

// CreatedAccountToken is a new account token with its secret, which the
// server shows only this once.
type CreatedAccountToken struct {
	steward.AccountToken
	Secret string `json:"secret"`
}

// CreateUserToken creates an API token owned by a user.
func (c *Client) CreateUserToken(ctx context.Context, userID string, req AccountTokenRequest) (CreatedAccountToken, error) {
	var out CreatedAccountToken
	err := c.do(ctx, http.MethodPost, "/api/v1/users/"+seg(userID)+"/tokens", nil, req, &out)
	return out, err
}

// CreateServiceAccountToken creates an API token owned by a service account.
func (c *Client) CreateServiceAccountToken(ctx context.Context, accountID string, req AccountTokenRequest) (CreatedAccountToken, error) {
	var out CreatedAccountToken
	err := c.do(ctx, http.MethodPost, "/api/v1/service-accounts/"+seg(accountID)+"/tokens", nil, req, &out)
	return out, err
}

// ListUserTokens lists a user's tokens (never their secrets).
func (c *Client) ListUserTokens(ctx context.Context, userID string) ([]steward.AccountToken, error) {
	var out list[steward.AccountToken]
	err := c.do(ctx, http.MethodGet, "/api/v1/users/"+seg(userID)+"/tokens", nil, nil, &out)
	return out.Items, err
}

// ListServiceAccountTokens lists a service account's tokens.
func (c *Client) ListServiceAccountTokens(ctx context.Context, accountID string) ([]steward.AccountToken, error) {
	var out list[steward.AccountToken]
	err := c.do(ctx, http.MethodGet, "/api/v1/service-accounts/"+seg(accountID)+"/tokens", nil, nil, &out)
	return out.Items, err
}

// RoleInfo is a built-in or custom role with its permissions.
type RoleInfo struct {
	Name        steward.Role         `json:"name"`
	Builtin     bool                 `json:"builtin"`
	Description string               `json:"description,omitempty"`
	Permissions []steward.Permission `json:"permissions"`
	Query       string               `json:"query,omitempty"`
}

// RoleRequest defines a custom role; Query optionally limits its device
// permissions to the devices a fleet query selects.
type RoleRequest struct {
	Name        steward.Role         `json:"name,omitempty"`
	Description string               `json:"description,omitempty"`
	Permissions []steward.Permission `json:"permissions"`
	Query       string               `json:"query,omitempty"`
}

// ListRoles returns the built-in roles and the tenant's custom roles.
func (c *Client) ListRoles(ctx context.Context) ([]RoleInfo, error) {
	var out list[RoleInfo]
	err := c.do(ctx, http.MethodGet, "/api/v1/roles", nil, nil, &out)
	return out.Items, err
}

// CreateRole creates a custom role.
func (c *Client) CreateRole(ctx context.Context, req RoleRequest) (RoleInfo, error) {
	var out RoleInfo
	err := c.do(ctx, http.MethodPost, "/api/v1/roles", nil, req, &out)
	return out, err
}

// UpdateRole replaces a custom role's description, permissions and query.
func (c *Client) UpdateRole(ctx context.Context, name steward.Role, req RoleRequest) (RoleInfo, error) {
	var out RoleInfo
	err := c.do(ctx, http.MethodPut, "/api/v1/roles/"+seg(string(name)), nil, req, &out)
	return out, err
}

// DeleteRole deletes a custom role no one holds.
func (c *Client) DeleteRole(ctx context.Context, name steward.Role) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/roles/"+seg(string(name)), nil, nil, nil)
}
