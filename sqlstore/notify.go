package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward"
)

// channelConfig is the config column: the kind's settings.
type channelConfig struct {
	Webhook *steward.WebhookConfig `json:"webhook,omitempty"`
	Email   *steward.EmailConfig   `json:"email,omitempty"`
}

const channelCols = `id, tenant_id, name, kind, config, enabled, created_at`

func scanChannel(c *steward.NotificationChannel) []any {
	return []any{&c.ID, &c.TenantID, &c.Name, &c.Kind, channelConfigCol{c}, &c.Enabled, timeCol{&c.CreatedAt}}
}

// channelConfigCol scans the config column into the channel's settings.
type channelConfigCol struct{ c *steward.NotificationChannel }

// Scan implements sql.Scanner.
func (col channelConfigCol) Scan(src any) error {
	var cfg channelConfig
	if err := (jsonCol{&cfg}).Scan(src); err != nil {
		return err
	}
	col.c.Webhook, col.c.Email = cfg.Webhook, cfg.Email
	return nil
}

// CreateChannel implements steward.Store.
func (s *Store) CreateChannel(ctx context.Context, c steward.NotificationChannel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	cfg, err := jsonText(channelConfig{Webhook: c.Webhook, Email: c.Email}, "{}")
	if err != nil {
		return invalid("channel settings: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO notification_channels (`+channelCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.TenantID, c.Name, string(c.Kind), cfg, c.Enabled, ts(c.CreatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", c.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "a notification channel named %q or with ID %s already exists", c.Name, c.ID)
	}
	return s.fail(err, "create notification channel %s", c.ID)
}

// GetChannel implements steward.Store.
func (s *Store) GetChannel(ctx context.Context, tenantID, id string) (steward.NotificationChannel, error) {
	var c steward.NotificationChannel
	err := s.queryRow(ctx, `SELECT `+channelCols+` FROM notification_channels WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(scanChannel(&c)...)
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("notification channel %s not found", id)
	}
	return c, s.fail(err, "get notification channel %s", id)
}

// ListChannels implements steward.Store.
func (s *Store) ListChannels(ctx context.Context, tenantID string) ([]steward.NotificationChannel, error) {
	rows, err := s.query(ctx, `SELECT `+channelCols+` FROM notification_channels WHERE tenant_id = ? ORDER BY name, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list notification channels")
	}
	return collect(rows, scanChannel, s, "list notification channels")
}

// UpdateChannel implements steward.Store.
func (s *Store) UpdateChannel(ctx context.Context, c steward.NotificationChannel) error {
	if err := c.Validate(); err != nil {
		return err
	}
	cfg, err := jsonText(channelConfig{Webhook: c.Webhook, Email: c.Email}, "{}")
	if err != nil {
		return invalid("channel settings: %v", err)
	}
	res, err := s.exec(ctx, `UPDATE notification_channels SET name = ?, kind = ?, config = ?, enabled = ? WHERE tenant_id = ? AND id = ?`,
		c.Name, string(c.Kind), cfg, c.Enabled, c.TenantID, c.ID)
	if err != nil && s.d.IsUniqueViolation(err) {
		return steward.WrapError(steward.CodeConflict, err, "a notification channel named %q already exists", c.Name)
	}
	if err != nil {
		return s.fail(err, "update notification channel %s", c.ID)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "update notification channel %s", c.ID)
	}
	if n == 0 {
		return notFound("notification channel %s not found", c.ID)
	}
	return nil
}

// DeleteChannel implements steward.Store; the foreign key cascades to the
// channel's deliveries.
func (s *Store) DeleteChannel(ctx context.Context, tenantID, id string) error {
	return s.deleteOne(ctx, `DELETE FROM notification_channels WHERE tenant_id = ? AND id = ?`, tenantID, id, "notification channel")
}

func (s *Store) deleteOne(ctx context.Context, q, tenantID, id, what string) error {
	res, err := s.exec(ctx, q, tenantID, id)
	if err != nil {
		return s.fail(err, "delete %s %s", what, id)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete %s %s", what, id)
	}
	if n == 0 {
		return notFound("%s %s not found", what, id)
	}
	return nil
}

const silenceCols = `id, tenant_id, matchers, starts_at, ends_at, created_by, comment, created_at`

func scanSilence(x *steward.Silence) []any {
	return []any{&x.ID, &x.TenantID, jsonCol{&x.Matchers}, timeCol{&x.StartsAt}, timeCol{&x.EndsAt}, &x.CreatedBy, &x.Comment, timeCol{&x.CreatedAt}}
}

// CreateSilence implements steward.Store.
func (s *Store) CreateSilence(ctx context.Context, x steward.Silence) error {
	if err := x.Validate(); err != nil {
		return err
	}
	m, err := jsonText(x.Matchers, "[]")
	if err != nil {
		return invalid("silence matchers: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO silences (`+silenceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		x.ID, x.TenantID, m, ts(x.StartsAt), ts(x.EndsAt), x.CreatedBy, x.Comment, ts(x.CreatedAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", x.TenantID)
	}
	return s.fail(err, "create silence %s", x.ID)
}

// GetSilence implements steward.Store.
func (s *Store) GetSilence(ctx context.Context, tenantID, id string) (steward.Silence, error) {
	var x steward.Silence
	err := s.queryRow(ctx, `SELECT `+silenceCols+` FROM silences WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanSilence(&x)...)
	if errors.Is(err, sql.ErrNoRows) {
		return x, notFound("silence %s not found", id)
	}
	return x, s.fail(err, "get silence %s", id)
}

// ListSilences implements steward.Store.
func (s *Store) ListSilences(ctx context.Context, tenantID string) ([]steward.Silence, error) {
	rows, err := s.query(ctx, `SELECT `+silenceCols+` FROM silences WHERE tenant_id = ? ORDER BY created_at DESC, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list silences")
	}
	return collect(rows, scanSilence, s, "list silences")
}

// ExpireSilence implements steward.Store. A silence that has not started
// yet ends where it starts would break ends_at > starts_at, so its start
// moves back a microsecond.
func (s *Store) ExpireSilence(ctx context.Context, tenantID, id string, at time.Time) (steward.Silence, error) {
	if at.IsZero() {
		return steward.Silence{}, invalid("expire silence: a time is required")
	}
	at = ts(at)
	_, err := s.exec(ctx, `UPDATE silences SET
		starts_at = CASE WHEN starts_at >= ? THEN ? ELSE starts_at END,
		ends_at = ?
		WHERE tenant_id = ? AND id = ? AND ends_at > ?`,
		at, at.Add(-time.Microsecond), at, tenantID, id, at)
	if err != nil {
		return steward.Silence{}, s.fail(err, "expire silence %s", id)
	}
	return s.GetSilence(ctx, tenantID, id)
}

// ActiveSilences implements steward.Store.
func (s *Store) ActiveSilences(ctx context.Context, tenantID string, at time.Time) ([]steward.Silence, error) {
	at = ts(at)
	rows, err := s.query(ctx, `SELECT `+silenceCols+` FROM silences WHERE tenant_id = ? AND ends_at > ? AND starts_at <= ? ORDER BY created_at DESC, id`,
		tenantID, at, at)
	if err != nil {
		return nil, s.fail(err, "list active silences")
	}
	return collect(rows, scanSilence, s, "list active silences")
}

const deliveryCols = `id, tenant_id, channel_id, notification_key, payload, attempt, status, http_status, smtp_reply, error,
	next_attempt_at, created_at, delivered_at`

func scanDelivery(d *steward.Delivery) []any {
	return []any{&d.ID, &d.TenantID, &d.ChannelID, &d.NotificationKey, rawCol{&d.Payload}, &d.Attempt, &d.Status,
		&d.HTTPStatus, &d.SMTPReply, &d.Error, timeCol{&d.NextAttemptAt}, timeCol{&d.CreatedAt}, timePtrCol{&d.DeliveredAt}}
}

// rawCol scans a TEXT column holding JSON into a json.RawMessage, byte
// for byte: the webhook body is signed as stored.
type rawCol struct{ b *json.RawMessage }

// Scan implements sql.Scanner.
func (c rawCol) Scan(src any) error {
	switch v := src.(type) {
	case string:
		*c.b = json.RawMessage(v)
	case []byte:
		*c.b = append(json.RawMessage(nil), v...)
	default:
		return fmt.Errorf("scan payload: unexpected %T", src)
	}
	return nil
}

// EnqueueDelivery implements steward.Store.
func (s *Store) EnqueueDelivery(ctx context.Context, d steward.Delivery) error {
	if err := d.Validate(); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO deliveries (`+deliveryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.TenantID, d.ChannelID, d.NotificationKey, string(d.Payload), d.Attempt, string(d.Status),
		d.HTTPStatus, d.SMTPReply, d.Error, ts(d.NextAttemptAt), ts(d.CreatedAt), nullTSPtr(d.DeliveredAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "notification channel %s not found", d.ChannelID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "notification %q is already queued for channel %s", d.NotificationKey, d.ChannelID)
	}
	return s.fail(err, "enqueue delivery %s", d.ID)
}

// GetDelivery implements steward.Store.
func (s *Store) GetDelivery(ctx context.Context, tenantID, id string) (steward.Delivery, error) {
	var d steward.Delivery
	err := s.queryRow(ctx, `SELECT `+deliveryCols+` FROM deliveries WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanDelivery(&d)...)
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("delivery %s not found", id)
	}
	return d, s.fail(err, "get delivery %s", id)
}

// ClaimDeliveries implements steward.Store. One UPDATE picks and takes the
// rows: on PostgreSQL the inner SELECT locks them and skips those another
// node holds, and the outer conditions, checked again on the row version
// it ends up updating, keep a row another node just claimed from being
// claimed twice; on SQLite the statement runs alone.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]steward.Delivery, error) {
	if limit < 1 || limit > 1000 {
		return nil, invalid("claim deliveries: limit %d is not within 1 to 1000", limit)
	}
	if lease <= 0 {
		return nil, invalid("claim deliveries: the lease must be positive")
	}
	now = ts(now)
	rows, err := s.wquery(ctx, `UPDATE deliveries SET attempt = attempt + 1, next_attempt_at = ?
		WHERE status = 'pending' AND next_attempt_at <= ? AND id IN (
			SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?
			ORDER BY next_attempt_at, id LIMIT ?`+s.d.SkipLocked+`)
		RETURNING `+deliveryCols,
		ts(now.Add(lease)), now, now, limit)
	if err != nil {
		return nil, s.fail(err, "claim deliveries")
	}
	return collect(rows, scanDelivery, s, "claim deliveries")
}

// wquery runs a query that writes (UPDATE … RETURNING) on the write side.
func (s *Store) wquery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.w.QueryContext(ctx, s.q(query), args...)
}

// RecordDelivery implements steward.Store.
func (s *Store) RecordDelivery(ctx context.Context, d steward.Delivery) error {
	if !d.Status.Valid() {
		return invalid("delivery status %q: want pending, delivered or failed", d.Status)
	}
	if d.NextAttemptAt.IsZero() {
		return invalid("a delivery needs next_attempt_at")
	}
	res, err := s.exec(ctx, `UPDATE deliveries SET status = ?, http_status = ?, smtp_reply = ?, error = ?,
		next_attempt_at = ?, delivered_at = ? WHERE tenant_id = ? AND id = ?`,
		string(d.Status), d.HTTPStatus, d.SMTPReply, d.Error, ts(d.NextAttemptAt), nullTSPtr(d.DeliveredAt), d.TenantID, d.ID)
	if err != nil {
		return s.fail(err, "record delivery %s", d.ID)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "record delivery %s", d.ID)
	}
	if n == 0 {
		return notFound("delivery %s not found", d.ID)
	}
	return nil
}

// ListDeliveries implements steward.Store.
func (s *Store) ListDeliveries(ctx context.Context, tenantID string, f steward.DeliveryFilter) ([]steward.Delivery, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, invalid("delivery status %q: want pending, delivered or failed", f.Status)
	}
	switch {
	case f.Limit < 0 || f.Limit > 1000:
		return nil, invalid("limit %d is not within 1 to 1000", f.Limit)
	case f.Limit == 0:
		f.Limit = 100
	}
	q := `SELECT ` + deliveryCols + ` FROM deliveries WHERE tenant_id = ?`
	args := []any{tenantID}
	if f.ChannelID != "" {
		q += ` AND channel_id = ?`
		args = append(args, f.ChannelID)
	}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, string(f.Status))
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	rows, err := s.query(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, s.fail(err, "list deliveries")
	}
	return collect(rows, scanDelivery, s, "list deliveries")
}
