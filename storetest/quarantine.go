package storetest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func testQuarantinePolicies(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	_, err := s.GetQuarantinePolicy(c, tenantA)
	wantCode(t, err, steward.CodeNotFound)

	p := steward.DefaultQuarantinePolicy(tenantA)
	p.MayPublish = []steward.Channel{steward.ChannelAttributes, steward.ChannelTelemetry}
	p.Rules.ACLDenied = steward.QuarantineRule{Enabled: true, Threshold: 5, Window: steward.Duration(90 * time.Second)}
	p.Rules.ConfigChanged.Enabled = false
	p.WebhookChannel = "ch-1"
	p.UpdatedAt, p.UpdatedBy = at(time.Minute), "token:t1"
	must(t, s.PutQuarantinePolicy(c, p))
	got, err := s.GetQuarantinePolicy(c, tenantA)
	must(t, err)
	p.UpdatedAt = stored(p.UpdatedAt)
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("GetQuarantinePolicy = %+v, want %+v", got, p)
	}

	t.Run("replace", func(t *testing.T) {
		q := p
		q.MayPublish, q.MaySubscribe = []steward.Channel{}, []steward.Channel{}
		q.WebhookChannel = ""
		q.UpdatedAt = at(2 * time.Minute)
		must(t, s.PutQuarantinePolicy(c, q))
		got, err := s.GetQuarantinePolicy(c, tenantA)
		must(t, err)
		if len(got.MayPublish) != 0 || len(got.MaySubscribe) != 0 || got.WebhookChannel != "" || !got.UpdatedAt.Equal(stored(q.UpdatedAt)) {
			t.Fatalf("replaced policy = %+v", got)
		}
		must(t, s.PutQuarantinePolicy(c, p)) // back, for the next subtests
	})

	t.Run("isolation", func(t *testing.T) {
		_, err := s.GetQuarantinePolicy(c, tenantB)
		wantCode(t, err, steward.CodeNotFound)
		b := steward.DefaultQuarantinePolicy(tenantB)
		b.UpdatedAt = at(3 * time.Minute)
		must(t, s.PutQuarantinePolicy(c, b))
		a, err := s.GetQuarantinePolicy(c, tenantA)
		must(t, err)
		if !slices.Equal(a.MayPublish, p.MayPublish) || a.Rules.ACLDenied.Threshold != 5 {
			t.Fatalf("tenant B's policy changed A's: %+v", a)
		}
		got, err := s.GetQuarantinePolicy(c, tenantB)
		must(t, err)
		if got.TenantID != tenantB || !slices.Equal(got.MayPublish, steward.QuarantineMayPublish) {
			t.Fatalf("tenant B's policy = %+v", got)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for name, bad := range map[string]func(q *steward.QuarantinePolicy){
			"unknown channel":    func(q *steward.QuarantinePolicy) { q.MayPublish = []steward.Channel{"bogus"} },
			"configuration":      func(q *steward.QuarantinePolicy) { q.MaySubscribe = []steward.Channel{steward.ChannelTwinDesired} },
			"wrong direction":    func(q *steward.QuarantinePolicy) { q.MayPublish = []steward.Channel{steward.ChannelCmdReq} },
			"negative threshold": func(q *steward.QuarantinePolicy) { q.Rules.AuthFailed.Threshold = -1 },
			"zero window":        func(q *steward.QuarantinePolicy) { q.Rules.ACLDenied.Window = 0 },
			"no time":            func(q *steward.QuarantinePolicy) { q.UpdatedAt = time.Time{} },
		} {
			q := p
			q.UpdatedAt = at(4 * time.Minute)
			bad(&q)
			wantCode(t, s.PutQuarantinePolicy(c, q), steward.CodeInvalid)
			if name == "" {
				t.Fatal("unnamed case")
			}
		}
		q := steward.DefaultQuarantinePolicy("no-such-tenant")
		q.UpdatedAt = at(4 * time.Minute)
		wantCode(t, s.PutQuarantinePolicy(c, q), steward.CodeNotFound)
		got, err := s.GetQuarantinePolicy(c, tenantA)
		must(t, err)
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("a refused policy changed the stored one: %+v", got)
		}
	})
}
