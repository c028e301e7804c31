package server

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestSiteOutageEndToEnd connects four devices of one site over MQTT with
// paho clients and drops them all: the node raises one site alert, records
// the four devices' offline alerts as inhibited by it, and notifies only
// the site's. Three devices come back: the site alert resolves; the
// fourth device's alert, still firing after the site's recovery grace,
// reaches the webhook on its own, and the three never do.
func TestSiteOutageEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()

	hook, _ := n.newWebhook(t, "ops", "webhook-secret-for-the-test")
	// mentions counts the webhook bodies that mention s.
	mentions := func(s string) int {
		k := 0
		for _, b := range hook.received() {
			if strings.Contains(string(b), s) {
				k++
			}
		}
		return k
	}

	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	var (
		ids     []string
		certs   []tls.Certificate
		clients []paho.Client
	)
	for _, serial := range []string{"SN-1", "SN-2", "SN-3", "SN-4"} {
		op := n.enroll(t, mfr.Factory(t, serial))
		id := op.Leaf.Subject.CommonName
		if _, err := n.admin.UpdateDevice(ctx, id, steward.DevicePatch{Location: &steward.Location{Site: "paris"}}); err != nil {
			t.Fatal(err)
		}
		c, err := n.mqttClient(t, op, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids, certs, clients = append(ids, id), append(certs, op), append(clients, c)
	}
	online := func(id string) bool {
		d, err := n.admin.GetDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.Presence.Online
	}
	for _, id := range ids {
		eventually(t, "device online", func() bool { return online(id) })
	}
	// The rule comes once they are all online: an enrolled device never
	// heard from counts as absent.
	rule, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "offline", Kind: steward.RuleAbsence, Severity: steward.AlertMajor, Enabled: true,
		Absence: &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(2 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	// The site rule's recovery grace is long enough for the three devices
	// that come back to reconnect on a loaded machine, short for a test.
	siteRule, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "sites", Kind: steward.RuleSiteConnectivity, Severity: steward.AlertMajor, Enabled: true,
		Site: &steward.SiteCondition{RecoveryGrace: steward.Duration(10 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	alertsOf := func(ruleID string) []steward.Alert {
		as, err := n.admin.ListAlerts(ctx, steward.AlertFilter{RuleID: ruleID})
		if err != nil {
			t.Fatal(err)
		}
		var open []steward.Alert // the API has no open filter
		for _, a := range as {
			if a.State.Open() {
				open = append(open, a)
			}
		}
		return open
	}

	// The site goes dark. The devices' window is long enough for the site
	// check to see them all gone before their own alerts fire (an alert
	// that fired, and was notified, before its site went dark is not
	// inhibited later).
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.Disconnect(100) })
	}
	wg.Wait()
	var site steward.Alert
	eventually(t, "site alert firing", func() bool {
		as := alertsOf(siteRule.ID)
		if len(as) == 1 && as[0].State == steward.AlertFiring {
			site = as[0]
			return true
		}
		return false
	})
	if site.Subject != "paris" || site.Labels["site"] != "paris" || site.DeviceID != "" {
		t.Fatalf("site alert: %+v", site)
	}
	var seen time.Time
	eventually(t, "four inhibited device alerts", func() bool {
		as := alertsOf(rule.ID)
		k := 0
		for _, a := range as {
			if a.State == steward.AlertFiring && a.InhibitedBy == site.ID {
				k++
				seen = a.LastEvaluatedAt
			}
		}
		return k == 4
	})
	// One more pass: the pass that fired them has notified what it would.
	eventually(t, "another evaluation", func() bool {
		as := alertsOf(rule.ID)
		return len(as) > 0 && as[0].LastEvaluatedAt.After(seen)
	})
	eventually(t, "site notification on the webhook", func() bool { return mentions(site.ID) > 0 })
	for _, id := range ids {
		if k := mentions(id); k != 0 {
			t.Fatalf("an inhibited alert of %s was notified (%d webhook bodies): %q", id, k, hook.received())
		}
	}

	// Three come back together; the fourth stays away.
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { _, errs[i] = n.mqttClient(t, certs[i], ids[i], nil) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "fourth device's alert notified on its own", func() bool { return mentions(ids[3]) > 0 })
	if as := alertsOf(siteRule.ID); len(as) != 0 {
		t.Fatalf("site alert still open: %+v", as)
	}
	as := alertsOf(rule.ID)
	if len(as) != 1 || as[0].DeviceID != ids[3] || as[0].InhibitedBy != "" || as[0].State != steward.AlertFiring {
		t.Fatalf("open device alerts after recovery: %+v", as)
	}
	for _, id := range ids[:3] {
		if k := mentions(id); k != 0 {
			t.Fatalf("%s, back with its site, was notified (%d webhook bodies)", id, k)
		}
	}
}
