package server

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

// TestChannelSecretsSealed: a webhook secret and an SMTP password given to
// the API are in no row of the database and in no answer of the API, and
// the webhook's requests are still signed with the secret.
func TestChannelSecretsSealed(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	const secret, password = "whsec-api-5e1f0c", "smtp-api-a17b33"
	wh, hook := n.newWebhook(t, "sealed hook", secret)
	mail, err := n.admin.CreateChannel(ctx, client.ChannelRequest{Name: "sealed mail", Kind: steward.ChannelEmail,
		Email: &steward.EmailConfig{To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: "127.0.0.1:25",
			Username: "steward", Password: password}})
	if err != nil {
		t.Fatal(err)
	}

	db := n.Store.(interface{ DB() *sql.DB }).DB()
	rows, err := db.QueryContext(ctx, `SELECT config FROM notification_channels`)
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, c)
	}
	rows.Close()
	if len(stored) != 2 {
		t.Fatalf("%d channel rows, want 2", len(stored))
	}
	for _, c := range stored {
		if strings.Contains(c, secret) || strings.Contains(c, password) {
			t.Fatalf("a channel row holds a secret in clear: %s", c)
		}
	}

	httpc := &http.Client{Timeout: 30 * time.Second}
	for _, path := range []string{"/api/v1/notification-channels", "/api/v1/notification-channels/" + hook.ID, "/api/v1/notification-channels/" + mail.ID} {
		status, body := send(t, httpc, n.APIURL(), "GET", path, n.AdminToken, nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		if s := string(body); strings.Contains(s, secret) || strings.Contains(s, password) || strings.Contains(s, "sealed:") {
			t.Fatalf("GET %s answers a secret: %s", path, s)
		}
	}
	if hook.Webhook == nil || !hook.Webhook.SecretSet || mail.Email == nil || !mail.Email.PasswordSet {
		t.Fatalf("the API says a secret is not set: %+v %+v", hook.Webhook, mail.Email)
	}

	// Sent through the real path, the request is signed with the secret.
	if _, err := n.admin.TestChannel(ctx, hook.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the test notification is delivered", func() bool { return len(wh.received()) > 0 })
}
