package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func configTemplate(tenant, id, name string, layer steward.ConfigLayer, selector string) steward.ConfigTemplate {
	return steward.ConfigTemplate{ID: id, TenantID: tenant, Name: name, Layer: layer, Selector: selector,
		Description: "for " + name, CreatedAt: t0, UpdatedAt: t0}
}

func configVersion(tenant, id, template, doc string) steward.ConfigVersion {
	return steward.ConfigVersion{ID: id, TenantID: tenant, TemplateID: template, Document: json.RawMessage(doc),
		Author: "token:t1", Message: "change " + id, CreatedAt: t0}
}

// twinOf returns a new twin of a device with a desired document.
func twinOf(tenant, device, desired string) steward.Twin {
	return steward.Twin{TenantID: tenant, DeviceID: device, Desired: json.RawMessage(desired), DesiredVersion: 1,
		Sources:   []steward.ConfigSource{{TemplateID: "ct-1", VersionID: "cv-1", Version: 1, Layer: steward.LayerBase}},
		DesiredBy: "token:t1", DesiredAt: t0, CreatedAt: t0, UpdatedAt: t0}
}

func wantJSON(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	if !steward.JSONEqual(got, want) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func testConfigTemplates(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	base := configTemplate(tenantA, "ct-base", "base", steward.LayerBase, "")
	model := configTemplate(tenantA, "ct-gw", "gateways", steward.LayerModel, "gw-100")
	must(t, s.CreateConfigTemplate(c, model))
	must(t, s.CreateConfigTemplate(c, base))
	got, err := s.GetConfigTemplate(c, tenantA, "ct-gw")
	must(t, err)
	model.CreatedAt, model.UpdatedAt = stored(t0), stored(t0)
	if got != model {
		t.Fatalf("GetConfigTemplate = %+v, want %+v", got, model)
	}
	list, err := s.ListConfigTemplates(c, tenantA)
	must(t, err)
	if len(list) != 2 || list[0].ID != "ct-base" || list[1].ID != "ct-gw" {
		t.Fatalf("ListConfigTemplates (base first) = %+v", list)
	}
	// A name, or a layer and selector, once per tenant; any of them in another.
	wantCode(t, s.CreateConfigTemplate(c, configTemplate(tenantA, "ct-x", "gateways", steward.LayerSite, "paris")), steward.CodeConflict)
	wantCode(t, s.CreateConfigTemplate(c, configTemplate(tenantA, "ct-y", "other", steward.LayerModel, "gw-100")), steward.CodeConflict)
	must(t, s.CreateConfigTemplate(c, configTemplate(tenantB, "ct-b", "gateways", steward.LayerModel, "gw-100")))

	// Invalid templates are refused and nothing is written.
	for _, bad := range []steward.ConfigTemplate{
		configTemplate(tenantA, "ct-1", "", steward.LayerBase, ""),
		configTemplate(tenantA, "ct-2", "x", "region", "eu"),
		configTemplate(tenantA, "ct-3", "x", steward.LayerBase, "gw-100"),
		configTemplate(tenantA, "ct-4", "x", steward.LayerSite, ""),
	} {
		wantCode(t, s.CreateConfigTemplate(c, bad), steward.CodeInvalid)
	}
	list, err = s.ListConfigTemplates(c, tenantA)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("invalid templates were written: %+v", list)
	}

	// Update: name and description only.
	upd := model
	upd.Name, upd.Description, upd.Layer, upd.UpdatedAt = "gw", "renamed", steward.LayerSite, at(time.Hour)
	got, err = s.UpdateConfigTemplate(c, upd)
	must(t, err)
	if got.Name != "gw" || got.Description != "renamed" || got.Layer != steward.LayerModel || !got.UpdatedAt.Equal(stored(at(time.Hour))) {
		t.Fatalf("UpdateConfigTemplate = %+v", got)
	}
	upd.Name = "base"
	_, err = s.UpdateConfigTemplate(c, upd)
	wantCode(t, err, steward.CodeConflict)
	upd.TenantID = tenantB
	_, err = s.UpdateConfigTemplate(c, upd)
	wantCode(t, err, steward.CodeNotFound)

	// Isolation, and deletion of a template without versions.
	_, err = s.GetConfigTemplate(c, tenantB, "ct-gw")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteConfigTemplate(c, tenantB, "ct-gw"), steward.CodeNotFound)
	must(t, s.DeleteConfigTemplate(c, tenantA, "ct-gw"))
	wantCode(t, s.DeleteConfigTemplate(c, tenantA, "ct-gw"), steward.CodeNotFound)
}

func testConfigVersions(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateConfigTemplate(c, configTemplate(tenantA, "ct-site", "paris", steward.LayerSite, "paris")))
	v1 := configVersion(tenantA, "cv-1", "ct-site", `{"ntp": "pool.ntp.org", "interval": 30}`)
	v1.Schema = json.RawMessage(`{"type": "object"}`)
	got, err := s.CreateConfigVersion(c, v1)
	must(t, err)
	if got.Version != 1 || got.Layer != steward.LayerSite || got.Selector != "paris" || got.Author != v1.Author ||
		got.Message != v1.Message || !got.CreatedAt.Equal(stored(t0)) {
		t.Fatalf("CreateConfigVersion = %+v", got)
	}
	wantJSON(t, "document", got.Document, v1.Document)
	wantJSON(t, "schema", got.Schema, v1.Schema)
	v2, err := s.CreateConfigVersion(c, configVersion(tenantA, "cv-2", "ct-site", `{"interval": null}`))
	must(t, err)
	if v2.Version != 2 || v2.Schema != nil {
		t.Fatalf("second version = %+v", v2)
	}
	latest, err := s.LatestConfigVersion(c, tenantA, "ct-site")
	must(t, err)
	if latest.ID != "cv-2" {
		t.Fatalf("LatestConfigVersion = %+v", latest)
	}
	_, err = s.LatestConfigVersion(c, tenantB, "ct-site")
	wantCode(t, err, steward.CodeNotFound)
	tmpl, err := s.GetConfigTemplate(c, tenantA, "ct-site")
	must(t, err)
	if tmpl.LatestVersion != 2 {
		t.Fatalf("latest version = %d, want 2", tmpl.LatestVersion)
	}
	list, err := s.ListConfigVersions(c, tenantA, "ct-site")
	must(t, err)
	if len(list) != 2 || list[0].ID != "cv-2" || list[1].ID != "cv-1" {
		t.Fatalf("ListConfigVersions (newest first) = %+v", list)
	}

	// Refused: an ID taken, a document that is not an object, no message,
	// an unknown template, another tenant's template. Nothing is written.
	_, err = s.CreateConfigVersion(c, configVersion(tenantA, "cv-1", "ct-site", `{}`))
	wantCode(t, err, steward.CodeConflict)
	for _, doc := range []string{`[1]`, `"x"`, `{"a":`, ``} {
		_, err = s.CreateConfigVersion(c, configVersion(tenantA, "cv-9", "ct-site", doc))
		wantCode(t, err, steward.CodeInvalid)
	}
	noMsg := configVersion(tenantA, "cv-9", "ct-site", `{}`)
	noMsg.Message = " "
	_, err = s.CreateConfigVersion(c, noMsg)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.CreateConfigVersion(c, configVersion(tenantA, "cv-9", "ct-none", `{}`))
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.CreateConfigVersion(c, configVersion(tenantB, "cv-9", "ct-site", `{}`))
	wantCode(t, err, steward.CodeNotFound)
	tmpl, err = s.GetConfigTemplate(c, tenantA, "ct-site")
	must(t, err)
	list, _ = s.ListConfigVersions(c, tenantA, "ct-site")
	if tmpl.LatestVersion != 2 || len(list) != 2 {
		t.Fatalf("a refused version was written: latest %d, %d versions", tmpl.LatestVersion, len(list))
	}
	_, err = s.GetConfigVersion(c, tenantB, "cv-1")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.ListConfigVersions(c, tenantB, "ct-site")
	wantCode(t, err, steward.CodeNotFound)
	// A template with versions is kept.
	wantCode(t, s.DeleteConfigTemplate(c, tenantA, "ct-site"), steward.CodeFailedPrecondition)

	// Versions made at once get distinct numbers.
	const n = 8
	var wg sync.WaitGroup
	nums := make(chan int, n)
	for i := range n {
		wg.Go(func() {
			v, err := s.CreateConfigVersion(c, configVersion(tenantA, fmt.Sprintf("cv-c%d", i), "ct-site", `{}`))
			if err != nil {
				t.Error(err)
				return
			}
			nums <- v.Version
		})
	}
	wg.Wait()
	close(nums)
	seen := map[int]bool{}
	for v := range nums {
		if seen[v] || v < 3 || v > 2+n {
			t.Fatalf("version number %d repeated or out of range", v)
		}
		seen[v] = true
	}
}

func testTwins(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	must(t, s.CreateDevice(c, device(tenantB, "d-b")))

	tw := twinOf(tenantA, "d-1", `{"interval": 30, "ntp": {"server": "pool"}}`)
	tw.Override = json.RawMessage(`{"interval": 30}`)
	got, err := s.PutTwin(c, tw)
	must(t, err)
	if got.Rev != 1 || got.DesiredVersion != 1 || got.DesiredBy != "token:t1" || !got.DesiredAt.Equal(stored(t0)) ||
		len(got.Sources) != 1 || got.Sources[0] != tw.Sources[0] || got.Reported != nil || got.DriftSince != nil || got.Drifted {
		t.Fatalf("created twin = %+v", got)
	}
	wantJSON(t, "desired", got.Desired, tw.Desired)
	wantJSON(t, "override", got.Override, tw.Override)
	// A second create conflicts; a twin needs a device of its tenant.
	_, err = s.PutTwin(c, tw)
	wantCode(t, err, steward.CodeConflict)
	_, err = s.PutTwin(c, twinOf(tenantB, "d-1", `{}`))
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.PutTwin(c, twinOf(tenantA, "d-none", `{}`))
	wantCode(t, err, steward.CodeNotFound)

	// Reported side, over the revision read.
	rep := got
	rep.Reported = json.RawMessage(`{"interval": 30}`)
	rep.ReportedVersion = 1
	rep.ReportErrors = map[string]string{"ntp": "no handler"}
	rep.ReportedAt = at(time.Minute)
	since := at(time.Minute)
	rep.DriftSince = &since
	got2, err := s.PutTwin(c, rep)
	must(t, err)
	if got2.Rev != 2 || got2.ReportedVersion != 1 || got2.ReportErrors["ntp"] != "no handler" || !got2.ReportedAt.Equal(stored(at(time.Minute))) ||
		got2.DriftSince == nil || !got2.DriftSince.Equal(stored(since)) {
		t.Fatalf("reported twin = %+v", got2)
	}
	wantJSON(t, "reported", got2.Reported, rep.Reported)
	// A write over a stale revision is refused and changes nothing.
	stale := got
	stale.Desired = json.RawMessage(`{"interval": 99}`)
	stale.DesiredVersion = 2
	_, err = s.PutTwin(c, stale)
	wantCode(t, err, steward.CodeConflict)
	now, err := s.GetTwin(c, tenantA, "d-1")
	must(t, err)
	if now.Rev != 2 || now.DesiredVersion != 1 {
		t.Fatalf("stale write changed the twin: %+v", now)
	}
	// Bad documents are refused.
	for _, doc := range []string{`[]`, `{"a"`, `null`} {
		bad := now
		bad.Desired = json.RawMessage(doc)
		_, err = s.PutTwin(c, bad)
		wantCode(t, err, steward.CodeInvalid)
	}
	// Isolation.
	_, err = s.GetTwin(c, tenantB, "d-1")
	wantCode(t, err, steward.CodeNotFound)
	other := now
	other.TenantID = tenantB
	_, err = s.PutTwin(c, other)
	wantCode(t, err, steward.CodeNotFound)

	must2 := func(tw steward.Twin, err error) steward.Twin { t.Helper(); must(t, err); return tw }
	must2(s.PutTwin(c, twinOf(tenantA, "d-2", `{}`)))
	must2(s.PutTwin(c, twinOf(tenantB, "d-b", `{}`)))
	list, err := s.ListTwins(c, tenantA, steward.TwinFilter{})
	must(t, err)
	if len(list) != 2 || list[0].DeviceID != "d-1" || list[1].DeviceID != "d-2" {
		t.Fatalf("ListTwins = %+v", list)
	}
	list, err = s.ListTwins(c, tenantA, steward.TwinFilter{After: "d-1"})
	must(t, err)
	if len(list) != 1 || list[0].DeviceID != "d-2" {
		t.Fatalf("ListTwins after d-1 = %+v", list)
	}
}

func testTwinDrift(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	for _, id := range []string{"d-1", "d-2", "d-3"} {
		must(t, s.CreateDevice(c, device(tenantA, id)))
	}
	must(t, s.CreateDevice(c, device(tenantB, "d-b")))
	put := func(tenant, id string, since *time.Time) {
		t.Helper()
		tw := twinOf(tenant, id, `{"a": 1}`)
		tw.DriftSince = since
		_, err := s.PutTwin(c, tw)
		must(t, err)
	}
	old, recent := at(-time.Hour), at(-time.Minute)
	put(tenantA, "d-1", &old)
	put(tenantA, "d-2", &recent)
	put(tenantA, "d-3", nil)
	put(tenantB, "d-b", &old)

	grace := 10 * time.Minute
	changes, err := s.MarkDrift(c, t0, grace)
	must(t, err)
	flagged := map[string]steward.DriftChange{}
	for _, ch := range changes {
		flagged[ch.TenantID+"/"+ch.DeviceID] = ch
	}
	if len(changes) != 2 || !flagged[tenantA+"/d-1"].Drifted || !flagged[tenantB+"/d-b"].Drifted ||
		!flagged[tenantA+"/d-1"].Since.Equal(stored(old)) || !flagged[tenantA+"/d-1"].At.Equal(stored(t0)) {
		t.Fatalf("MarkDrift = %+v", changes)
	}
	// Each change is reported once.
	changes, err = s.MarkDrift(c, t0, grace)
	must(t, err)
	if len(changes) != 0 {
		t.Fatalf("second MarkDrift = %+v", changes)
	}
	list, err := s.ListTwins(c, tenantA, steward.TwinFilter{Drifted: true})
	must(t, err)
	if len(list) != 1 || list[0].DeviceID != "d-1" || !list[0].Drifted {
		t.Fatalf("drifted twins = %+v", list)
	}
	counts, err := s.CountDrift(c)
	must(t, err)
	if len(counts) != 2 || counts[0] != (steward.DriftCount{TenantID: tenantA, Twins: 3, Drifted: 1}) ||
		counts[1] != (steward.DriftCount{TenantID: tenantB, Twins: 1, Drifted: 1}) {
		t.Fatalf("CountDrift = %+v", counts)
	}

	// Back in sync: unflagged once, by the next run; the flag moved the
	// revision on, so a write over the revision read before it is refused.
	tw := list[0]
	stale := tw
	stale.Rev--
	_, err = s.PutTwin(c, stale)
	wantCode(t, err, steward.CodeConflict)
	tw.DriftSince = nil
	_, err = s.PutTwin(c, tw)
	must(t, err)
	changes, err = s.MarkDrift(c, at(10*time.Minute), grace)
	must(t, err)
	if len(changes) != 2 {
		t.Fatalf("MarkDrift after sync = %+v", changes)
	}
	for _, ch := range changes {
		switch ch.DeviceID {
		case "d-1":
			if ch.Drifted {
				t.Fatalf("d-1 still drifted: %+v", ch)
			}
		case "d-2": // its grace period ran out
			if !ch.Drifted {
				t.Fatalf("d-2 not flagged: %+v", ch)
			}
		default:
			t.Fatalf("unexpected change %+v", ch)
		}
	}

	// Two nodes at once: each change once in all.
	put2 := func(id string) {
		must(t, s.CreateDevice(c, device(tenantA, id)))
		put(tenantA, id, &old)
	}
	for i := range 6 {
		put2(fmt.Sprintf("d-x%d", i))
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		all []steward.DriftChange
	)
	for range 3 {
		wg.Go(func() {
			ch, err := s.MarkDrift(c, at(11*time.Minute), grace)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			all = append(all, ch...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(all) != 6 {
		t.Fatalf("concurrent MarkDrift reported %d changes, want 6: %+v", len(all), all)
	}
}

func testTwinKnownGood(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	src := func(v string) []steward.ConfigSource {
		return []steward.ConfigSource{{TemplateID: "ct-1", VersionID: v, Layer: steward.LayerBase}}
	}
	_, err := s.PreviousGoodVersion(c, tenantA, "d-1", "ct-1", "")
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.RecordKnownGood(c, tenantA, "d-1", src("cv-1"), at(time.Minute)))
	must(t, s.RecordKnownGood(c, tenantA, "d-1", src("cv-2"), at(2*time.Minute)))
	got, err := s.PreviousGoodVersion(c, tenantA, "d-1", "ct-1", "cv-2")
	must(t, err)
	if got != "cv-1" {
		t.Fatalf("previous good = %s, want cv-1", got)
	}
	got, err = s.PreviousGoodVersion(c, tenantA, "d-1", "ct-1", "cv-3")
	must(t, err)
	if got != "cv-2" {
		t.Fatalf("previous good = %s, want cv-2", got)
	}
	// Good again later: the newest time counts.
	must(t, s.RecordKnownGood(c, tenantA, "d-1", src("cv-1"), at(3*time.Minute)))
	got, err = s.PreviousGoodVersion(c, tenantA, "d-1", "ct-1", "cv-3")
	must(t, err)
	if got != "cv-1" {
		t.Fatalf("previous good = %s, want cv-1", got)
	}
	_, err = s.PreviousGoodVersion(c, tenantB, "d-1", "ct-1", "")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.RecordKnownGood(c, tenantB, "d-1", src("cv-1"), t0), steward.CodeNotFound)
}

// testDeleteTwin checks that a twin and its known-good versions go, once,
// and only in their tenant.
func testDeleteTwin(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantB, "d-1b")))
	_, err := s.PutTwin(c, twinOf(tenantA, "d-1", `{"interval": 30}`))
	must(t, err)
	_, err = s.PutTwin(c, twinOf(tenantB, "d-1b", `{"interval": 30}`))
	must(t, err)
	must(t, s.RecordKnownGood(c, tenantA, "d-1", []steward.ConfigSource{{TemplateID: "ct-1", VersionID: "cv-1", Layer: steward.LayerBase}}, at(time.Minute)))
	// Another tenant's ID deletes nothing.
	if gone, err := s.DeleteTwin(c, tenantB, "d-1"); err != nil || gone {
		t.Fatalf("delete across tenants: %v %v", gone, err)
	}
	if _, err := s.GetTwin(c, tenantA, "d-1"); err != nil {
		t.Fatalf("the twin went with another tenant's delete: %v", err)
	}
	gone, err := s.DeleteTwin(c, tenantA, "d-1")
	if err != nil || !gone {
		t.Fatalf("delete: %v %v", gone, err)
	}
	_, err = s.GetTwin(c, tenantA, "d-1")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.PreviousGoodVersion(c, tenantA, "d-1", "ct-1", "")
	wantCode(t, err, steward.CodeNotFound)
	if gone, err := s.DeleteTwin(c, tenantA, "d-1"); err != nil || gone {
		t.Fatalf("second delete: %v %v", gone, err)
	}
	if _, err := s.GetTwin(c, tenantB, "d-1b"); err != nil {
		t.Fatalf("tenant B's twin: %v", err)
	}
}
