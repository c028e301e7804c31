package twin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// TestMergePatch runs the examples of RFC 7386, appendix A.
func TestMergePatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	} {
		t.Run(tc.target+"+"+tc.patch, func(t *testing.T) {
			t.Parallel()
			target, err := decode([]byte(tc.target))
			must(t, err)
			patch, err := decode([]byte(tc.patch))
			must(t, err)
			got, err := encode(MergePatch(target, patch))
			must(t, err)
			wantDoc(t, "merged", got, tc.want)
			// The patch MakeMergePatch finds from target to the result,
			// applied to target, gives the result again.
			tm, ok1 := target.(map[string]any)
			rm, ok2 := MergePatch(target, patch).(map[string]any)
			if ok1 && ok2 {
				again, err := encode(MergePatch(tm, MakeMergePatch(tm, rm)))
				must(t, err)
				wantDoc(t, "round trip", again, tc.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	a, _ := decode([]byte(`{"interval": 30, "ntp": {"servers": ["a"], "port": 123}, "gone": true, "a/b": 1}`))
	b, _ := decode([]byte(`{"interval": 60, "ntp": {"servers": ["a", "b"], "port": 123.0}, "new": {"x": 1}, "a/b": 1}`))
	got := Diff(a, b)
	want := []string{"remove /gone", "replace /interval", "add /new", "replace /ntp/servers"}
	if len(got) != len(want) {
		t.Fatalf("Diff = %+v", got)
	}
	for i, c := range got {
		if c.Op+" "+c.Path != want[i] {
			t.Fatalf("change %d = %+v, want %s", i, c, want[i])
		}
	}
	if fmt.Sprint(got[1].Old) != "30" || fmt.Sprint(got[1].Value) != "60" {
		t.Fatalf("replace /interval = %+v", got[1])
	}
	if len(Diff(a, a)) != 0 {
		t.Fatal("a document differs from itself")
	}
}

// TestLayering checks the order base → model → customer → site → device,
// that only the templates a device matches apply, and that a direct
// update is the last layer.
func TestLayering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "acme", "paris")
	e.device(t, "d-2", "gw-200", "acme", "lyon")
	_, base := e.template(t, "base", steward.LayerBase, "", `{"interval": 60, "ntp": {"servers": ["pool.ntp.org"], "port": 123}, "log": "info", "big": 12345678901234567890}`, "")
	_, model := e.template(t, "gw-100", steward.LayerModel, "gw-100", `{"interval": 30, "ntp": {"servers": ["ntp.gw"]}}`, "")
	_, cust := e.template(t, "acme", steward.LayerCustomer, "acme", `{"log": "debug", "owner": "acme"}`, "")
	_, site := e.template(t, "paris", steward.LayerSite, "paris", `{"log": null, "tz": "Europe/Paris"}`, "")
	_, dev := e.template(t, "d-1 fix", steward.LayerDevice, "d-1", `{"interval": 15}`, "")

	tw, err := e.svc.GetTwin(ctx, tenant, "d-1")
	must(t, err)
	if tw.DesiredVersion != 0 {
		t.Fatalf("a twin never set is at version %d", tw.DesiredVersion)
	}
	wantDoc(t, "d-1 desired", tw.Desired, `{"interval": 15, "ntp": {"servers": ["ntp.gw"], "port": 123}, "owner": "acme", "tz": "Europe/Paris", "big": 12345678901234567890}`)
	var order []string
	for _, s := range tw.Sources {
		order = append(order, s.VersionID)
	}
	if want := []string{base.ID, model.ID, cust.ID, site.ID, dev.ID}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("sources %v, want %v", order, want)
	}
	// d-2 matches the base and the customer only.
	tw2, err := e.svc.GetTwin(ctx, tenant, "d-2")
	must(t, err)
	wantDoc(t, "d-2 desired", tw2.Desired, `{"interval": 60, "ntp": {"servers": ["pool.ntp.org"], "port": 123}, "log": "debug", "owner": "acme", "big": 12345678901234567890}`)

	// A direct update applies over every template, and removes with null.
	tw, err = e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"interval": 5, "tz": null, "extra": {"k": "v"}}`), nil, "token:op")
	must(t, err)
	if tw.DesiredVersion != 1 || tw.DesiredBy != "token:op" {
		t.Fatalf("updated twin %+v", tw)
	}
	wantDoc(t, "after update", tw.Desired, `{"interval": 5, "ntp": {"servers": ["ntp.gw"], "port": 123}, "owner": "acme", "extra": {"k": "v"}, "big": 12345678901234567890}`)
	wantDoc(t, "override", tw.Override, `{"interval": 5, "tz": null, "extra": {"k": "v"}}`)
	// The large integer reaches the device as written.
	if !strings.Contains(string(tw.Desired), "12345678901234567890") {
		t.Fatalf("number changed on the way: %s", tw.Desired)
	}

	// A new base version is not applied until it is rolled out; then the
	// override still applies over it.
	v2, err := e.svc.CreateVersion(ctx, steward.ConfigVersion{TenantID: tenant, TemplateID: base.TemplateID, Document: json.RawMessage(`{"interval": 60, "ntp": {"servers": ["pool.ntp.org"], "port": 123}, "log": "info", "mqtt": {"keepalive": 30}}`), Message: "keepalive"}, "token:op")
	must(t, err)
	if e.twin(t, "d-1").DesiredVersion != 1 {
		t.Fatal("a new version changed a twin before it was rolled out")
	}
	doc, err := e.svc.ResolveConfig(ctx, tenant, "d-1", v2.ID)
	must(t, err)
	wantDoc(t, "resolved", doc, `{"interval": 5, "ntp": {"servers": ["ntp.gw"], "port": 123}, "owner": "acme", "extra": {"k": "v"}, "mqtt": {"keepalive": 30}}`)
	tw, err = e.svc.ApplyConfigVersion(ctx, tenant, "d-1", v2.ID, "deployment:dp-1")
	must(t, err)
	wantDoc(t, "applied", tw.Desired, string(doc))
	if tw.DesiredVersion != 2 || tw.Sources[0].VersionID != v2.ID || tw.Sources[0].Version != 2 {
		t.Fatalf("applied twin %+v", tw)
	}
	// A version of a template that does not apply to the device is refused.
	_, err = e.svc.ApplyConfigVersion(ctx, tenant, "d-2", model.ID, "deployment:dp-1")
	wantCode(t, err, steward.CodeFailedPrecondition, "does not apply")

	// Each change was audited, and published retained.
	e.mu.Lock()
	defer e.mu.Unlock()
	var actions []string
	for _, a := range e.audits {
		actions = append(actions, a.Action)
	}
	if n := strings.Count(strings.Join(actions, " "), "twin."); n != 2 {
		t.Fatalf("audited %v", actions)
	}
	last := e.sent[len(e.sent)-1]
	if last.Channel != steward.ChannelTwinDesired || !last.Retain || last.QoS != 1 || last.DeviceID != "d-1" {
		t.Fatalf("published %+v", last)
	}
	var msg steward.TwinDesiredMessage
	must(t, json.Unmarshal(last.Payload, &msg))
	if msg.Version != 2 {
		t.Fatalf("published version %d", msg.Version)
	}
	wantDoc(t, "published state", msg.State, string(doc))
	wantDoc(t, "published delta", msg.Delta, `{"mqtt": {"keepalive": 30}, "big": null}`)
}

const schema = `{
	"type": "object",
	"properties": {
		"interval": {"type": "integer", "minimum": 1},
		"ntp": {"type": "object", "properties": {"servers": {"type": "array", "items": {"type": "string"}}}}
	},
	"required": ["interval"]
}`

// TestSchemaErrors checks that a configuration that breaks a schema is
// refused with the path of the failing value, and nothing is written.
func TestSchemaErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "", "")
	base, _ := e.template(t, "base", steward.LayerBase, "", `{"interval": 30, "ntp": {"servers": ["a"]}}`, schema)
	model, _ := e.template(t, "model", steward.LayerModel, "gw-100", `{}`, "")
	_, err := e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"interval": 10}`), nil, "token:op")
	must(t, err)

	for _, tc := range []struct {
		name, patch, path string
	}{
		{"wrong type", `{"interval": "often"}`, "/interval"},
		{"below minimum", `{"interval": 0}`, "/interval"},
		{"nested array item", `{"ntp": {"servers": ["a", 3]}}`, "/ntp/servers/1"},
		{"required removed", `{"interval": null}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(tc.patch), nil, "token:op")
			wantCode(t, err, steward.CodeInvalid, "does not match its schema")
			se := schemaError(err)
			if se == nil || se.Path != tc.path {
				t.Fatalf("error %v: path %+v, want %q", err, se, tc.path)
			}
			tw := e.twin(t, "d-1")
			if tw.DesiredVersion != 1 {
				t.Fatalf("a refused change was written: %+v", tw)
			}
			wantDoc(t, "desired", tw.Desired, `{"interval": 10, "ntp": {"servers": ["a"]}}`)
		})
	}

	// A layer's version that breaks the schema is refused when rolled out.
	bad, err := e.svc.CreateVersion(ctx, steward.ConfigVersion{TenantID: tenant, TemplateID: model.ID, Document: json.RawMessage(`{"ntp": {"servers": [1]}}`), Message: "bad"}, "token:op")
	must(t, err)
	_, err = e.svc.ApplyConfigVersion(ctx, tenant, "d-1", bad.ID, "token:op")
	wantCode(t, err, steward.CodeInvalid, "/ntp/servers/0")
	_, err = e.svc.ResolveConfig(ctx, tenant, "d-1", bad.ID)
	wantCode(t, err, steward.CodeInvalid, "/ntp/servers/0")
	if tw := e.twin(t, "d-1"); tw.DesiredVersion != 1 {
		t.Fatalf("a refused version was written: %+v", tw)
	}

	// A base version must satisfy its own schema; a schema must compile
	// and may not reach outside itself. Nothing is written.
	for _, tc := range []struct{ name, doc, schema, says string }{
		{"base breaks its schema", `{"interval": -1}`, schema, "/interval"},
		{"not a schema", `{"interval": 1}`, `{"type": 12}`, "not a valid JSON Schema"},
		{"file reference", `{"interval": 1}`, `{"$ref": "file:///etc/passwd"}`, "not a valid JSON Schema"},
		{"remote reference", `{"interval": 1}`, `{"$ref": "https://example.com/s.json"}`, "not a valid JSON Schema"},
		{"document not an object", `[1]`, ``, "must be a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := steward.ConfigVersion{TenantID: tenant, TemplateID: base.ID, Document: json.RawMessage(tc.doc), Message: "m"}
			if tc.schema != "" {
				v.Schema = json.RawMessage(tc.schema)
			}
			_, err := e.svc.CreateVersion(ctx, v, "token:op")
			wantCode(t, err, steward.CodeInvalid, tc.says)
			tm, err := e.svc.GetTemplate(ctx, tenant, base.ID)
			must(t, err)
			if tm.LatestVersion != 1 {
				t.Fatalf("a refused version was written: latest %d", tm.LatestVersion)
			}
		})
	}
}

// TestStaleVersionsRefused runs changes made against the same desired
// version at once, with device reports in between: exactly one wins, the
// others are refused as stale, and no report is lost.
func TestStaleVersionsRefused(t *testing.T) {
	t.Parallel()
	forEachStore(t, testStaleVersionsRefused)
}

func testStaleVersionsRefused(t *testing.T, e *env) {
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "", "")
	e.template(t, "base", steward.LayerBase, "", `{"interval": 30}`, "")
	tw, err := e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"n": 0}`), nil, "token:op")
	must(t, err)
	v := tw.DesiredVersion

	const writers = 12
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		won, stale     int
		others         []error
		reportFailures []error
	)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			_, err := e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(fmt.Sprintf(`{"n": %d}`, i+1)), &v, fmt.Sprintf("token:w%d", i))
			mu.Lock()
			defer mu.Unlock()
			switch steward.ErrorCode(err) {
			case "":
				won++
			case steward.CodeFailedPrecondition:
				stale++
			default:
				others = append(others, err)
			}
		})
	}
	wg.Go(func() {
		<-start
		for range 10 {
			if err := e.report(t, "d-1", `{"version": 1, "state": {"interval": 30, "n": 0}}`); err != nil {
				mu.Lock()
				reportFailures = append(reportFailures, err)
				mu.Unlock()
			}
		}
	})
	close(start)
	wg.Wait()
	if won != 1 || stale != writers-1 || len(others) > 0 || len(reportFailures) > 0 {
		t.Fatalf("won %d, stale %d, other errors %v, report failures %v", won, stale, others, reportFailures)
	}
	tw = e.twin(t, "d-1")
	if tw.DesiredVersion != v+1 || tw.ReportedVersion != 1 {
		t.Fatalf("twin after the race: %+v", tw)
	}
	// A stale version names the current one.
	_, err = e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"n": 99}`), &v, "token:op")
	wantCode(t, err, steward.CodeFailedPrecondition, fmt.Sprintf("at desired version %d, not %d", v+1, v))
}

// TestDrift moves an injected clock through the grace period: a device
// that does not apply its desired state is flagged once the grace period
// is over, counted, and signalled; once it reports the desired state it
// is cleared.
func TestDrift(t *testing.T) {
	t.Parallel()
	forEachStore(t, testDrift)
}

func testDrift(t *testing.T, e *env) {
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "", "")
	e.device(t, "d-2", "gw-100", "", "")
	e.template(t, "base", steward.LayerBase, "", `{"interval": 30}`, "")
	for _, d := range []string{"d-1", "d-2"} {
		_, err := e.svc.UpdateTwin(ctx, tenant, d, json.RawMessage(`{"log": "info"}`), nil, "token:op")
		must(t, err)
	}
	// d-2 applies at once; d-1 reports something else.
	must(t, e.report(t, "d-2", `{"version": 1, "state": {"interval": 30, "log": "info"}}`))
	e.clock.Add(time.Minute)
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30}, "errors": {"log": "no handler for log"}}`))
	if tw := e.twin(t, "d-2"); tw.DriftSince != nil || !tw.InSync() {
		t.Fatalf("d-2 applied its state but %+v", tw)
	}
	tw := e.twin(t, "d-1")
	if tw.DriftSince == nil || tw.ReportErrors["log"] != "no handler for log" {
		t.Fatalf("d-1 reported a partial state: %+v", tw)
	}

	e.clock.Add(9*time.Minute - time.Second) // just inside the grace period
	changes, err := e.svc.CheckDrift(ctx)
	must(t, err)
	if len(changes) != 0 {
		t.Fatalf("flagged inside the grace period: %+v", changes)
	}
	e.clock.Add(time.Second)
	changes, err = e.svc.CheckDrift(ctx)
	must(t, err)
	if len(changes) != 1 || changes[0].DeviceID != "d-1" || !changes[0].Drifted {
		t.Fatalf("drift check = %+v", changes)
	}
	if c := e.svc.DriftCounts(); len(c) != 1 || c[0] != (steward.DriftCount{TenantID: tenant, Twins: 2, Drifted: 1}) {
		t.Fatalf("drift counts %+v", c)
	}
	list, n, err := e.svc.Drifted(ctx, tenant, steward.TwinFilter{})
	must(t, err)
	if n != 1 || len(list) != 1 || list[0].DeviceID != "d-1" {
		t.Fatalf("drifted %d %+v", n, list)
	}
	// The hook wrote what alert rules read: an event and a sample.
	evs, err := e.store.ListDeviceEvents(ctx, tenant, "d-1", steward.DeviceEventFilter{Type: EventDrift})
	must(t, err)
	latest, err := e.store.LatestSamples(ctx, tenant, "d-1")
	must(t, err)
	if len(evs) != 1 || evs[0].Severity != steward.SeverityWarning || len(latest) != 1 || latest[0].Metric != MetricDrift || latest[0].Value != 1 {
		t.Fatalf("drift signals: events %+v, samples %+v", evs, latest)
	}
	// Flagged once.
	e.clock.Add(time.Minute)
	changes, err = e.svc.CheckDrift(ctx)
	must(t, err)
	if len(changes) != 0 {
		t.Fatalf("flagged again: %+v", changes)
	}

	// d-1 applies its state: cleared at the next check, and signalled.
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30, "log": "info"}}`))
	changes, err = e.svc.CheckDrift(ctx)
	must(t, err)
	if len(changes) != 1 || changes[0].Drifted {
		t.Fatalf("clear = %+v", changes)
	}
	latest, err = e.store.LatestSamples(ctx, tenant, "d-1")
	must(t, err)
	evs, err = e.store.ListDeviceEvents(ctx, tenant, "d-1", steward.DeviceEventFilter{Type: EventDriftCleared})
	must(t, err)
	if len(evs) != 1 || latest[0].Value != 0 {
		t.Fatalf("cleared signals: events %+v, samples %+v", evs, latest)
	}
	if c := e.svc.DriftCounts(); c[0].Drifted != 0 {
		t.Fatalf("drift counts after clear %+v", c)
	}
	// A new desired state restarts the grace period.
	_, err = e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"log": "debug"}`), nil, "token:op")
	must(t, err)
	e.clock.Add(5 * time.Minute)
	changes, err = e.svc.CheckDrift(ctx)
	must(t, err)
	if len(changes) != 0 {
		t.Fatalf("flagged before the grace period of the new state ran out: %+v", changes)
	}
}

// TestReportsRefused sends reports that must be refused: each is
// acknowledged with its error, recorded as a security event, and changes
// nothing.
func TestReportsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "", "")
	e.template(t, "base", steward.LayerBase, "", `{"interval": 30}`, "")
	_, err := e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{}`), nil, "token:op")
	must(t, err)
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30}}`))
	before := e.twin(t, "d-1")

	big := `{"version": 1, "state": {"blob": "` + strings.Repeat("x", maxReported) + `"}}`
	bigState := `{"version": 1, "state": {"blob": "` + strings.Repeat("x", steward.MaxConfigDocument) + `"}}`
	for _, tc := range []struct {
		name, payload string
		code          steward.Code
		kind          steward.SecurityEventKind
	}{
		{"oversized message", big, steward.CodeTooLarge, steward.SecPayloadTooLarge},
		{"oversized state", bigState, steward.CodeTooLarge, steward.SecPayloadTooLarge},
		{"not JSON", `{"version": 1, "state": {`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"an array", `[1, 2]`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"no version", `{"state": {"interval": 30}}`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"negative version", `{"version": -1, "state": {}}`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"fractional version", `{"version": 1.5, "state": {}}`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"state not an object", `{"version": 1, "state": [1]}`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"errors not text", `{"version": 1, "state": {}, "errors": {"a": 1}}`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"version never desired", `{"version": 7, "state": {}}`, steward.CodeInvalid, steward.SecMalformedPayload},
		{"trailing data", `{"version": 1, "state": {}} {}`, steward.CodeInvalid, steward.SecMalformedPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.report(t, "d-1", tc.payload)
			wantCode(t, err, tc.code)
			evs, err := e.store.ListSecurityEvents(ctx, tenant, steward.SecurityEventFilter{DeviceID: "d-1", Kind: tc.kind, Limit: 1})
			must(t, err)
			if len(evs) == 0 || !strings.Contains(evs[0].Detail, "twin report") || !evs[0].At.Equal(e.clock.Now()) {
				t.Fatalf("no security event of kind %s: %+v", tc.kind, evs)
			}
			e.clock.Add(time.Second) // tell this case's event from the next one's
			after := e.twin(t, "d-1")
			if after.Rev != before.Rev {
				t.Fatalf("a refused report changed the twin: %+v", after)
			}
		})
	}
	// A stale report (an older version than reported) is dropped quietly.
	_, err = e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"x": 1}`), nil, "token:op")
	must(t, err)
	must(t, e.report(t, "d-1", `{"version": 2, "state": {"interval": 30, "x": 1}}`))
	rev := e.twin(t, "d-1").Rev
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30}}`))
	if tw := e.twin(t, "d-1"); tw.Rev != rev || tw.ReportedVersion != 2 {
		t.Fatalf("a stale report was written: %+v", tw)
	}
	// A device of another tenant cannot report into this one's twin.
	acked := make(chan error, 1)
	e.bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: "t2", DeviceID: "d-1", Channel: steward.ChannelTwinReported,
		Payload: []byte(`{"version": 0, "state": {}}`), Received: e.clock.Now()}, func(err error) { acked <- err })
	wantCode(t, <-acked, steward.CodeNotFound)
}

// TestRollbackTarget follows a device through two versions of a template:
// the known-good version to roll back to, and the apply status the
// deployment engine reads.
func TestRollbackTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "", "")
	tm, v1 := e.template(t, "base", steward.LayerBase, "", `{"interval": 30}`, "")
	v2, err := e.svc.CreateVersion(ctx, steward.ConfigVersion{TenantID: tenant, TemplateID: tm.ID, Document: json.RawMessage(`{"interval": 60}`), Message: "slower"}, "token:op")
	must(t, err)

	_, err = e.svc.ApplyConfigVersion(ctx, tenant, "d-1", v1.ID, "token:op")
	must(t, err)
	state, _, err := e.svc.ConfigStatus(ctx, tenant, "d-1", v1.ID)
	must(t, err)
	if state != steward.ConfigPending {
		t.Fatalf("status before any report = %s", state)
	}
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30}}`))
	state, _, _ = e.svc.ConfigStatus(ctx, tenant, "d-1", v1.ID)
	if state != steward.ConfigApplied {
		t.Fatalf("status after the report = %s", state)
	}
	_, err = e.svc.PreviousGoodConfig(ctx, tenant, "d-1", tm.ID)
	wantCode(t, err, steward.CodeNotFound)

	_, err = e.svc.ApplyConfigVersion(ctx, tenant, "d-1", v2.ID, "deployment:dp-1")
	must(t, err)
	if state, _, _ := e.svc.ConfigStatus(ctx, tenant, "d-1", v1.ID); state != steward.ConfigSuperseded {
		t.Fatalf("v1 status = %s", state)
	}
	must(t, e.report(t, "d-1", `{"version": 2, "state": {"interval": 30}, "errors": {"interval": "out of range"}}`))
	state, detail, _ := e.svc.ConfigStatus(ctx, tenant, "d-1", v2.ID)
	if state != steward.ConfigFailed || !strings.Contains(detail, "out of range") {
		t.Fatalf("v2 status = %s %s", state, detail)
	}
	prev, err := e.svc.PreviousGoodConfig(ctx, tenant, "d-1", tm.ID)
	must(t, err)
	if prev != v1.ID {
		t.Fatalf("rollback target %s, want %s", prev, v1.ID)
	}
	tw, err := e.svc.ApplyConfigVersion(ctx, tenant, "d-1", prev, "deployment:dp-1")
	must(t, err)
	wantDoc(t, "rolled back", tw.Desired, `{"interval": 30}`)

	// Diff between the versions, and against the previous one by default.
	ch, err := e.svc.Diff(ctx, tenant, v2.ID, v1.ID)
	must(t, err)
	if len(ch) != 1 || ch[0].Path != "/interval" {
		t.Fatalf("diff = %+v", ch)
	}
	ch2, err := e.svc.Diff(ctx, tenant, v2.ID, "")
	must(t, err)
	if fmt.Sprint(ch) != fmt.Sprint(ch2) {
		t.Fatalf("diff against the previous version = %+v", ch2)
	}
	ch, err = e.svc.Diff(ctx, tenant, v1.ID, "")
	must(t, err)
	if len(ch) != 1 || ch[0].Op != "add" {
		t.Fatalf("diff of a first version = %+v", ch)
	}
}

// TestReportsRefusedToGate: with a gate to record security events, a
// refused report's event goes to it (which stores and audits it), not
// straight to the store.
func TestReportsRefusedToGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.device(t, "d-1", "gw-100", "", "")
	var got []steward.SecurityEvent
	e.svc.cfg.RecordSecurityEvent = func(_ context.Context, ev steward.SecurityEvent) { got = append(got, ev) }
	wantCode(t, e.report(t, "d-1", `[1, 2]`), steward.CodeInvalid)
	if len(got) != 1 || got[0].Kind != steward.SecMalformedPayload || got[0].TenantID != tenant || got[0].DeviceID != "d-1" ||
		!strings.Contains(got[0].Detail, "twin report") {
		t.Fatalf("events given to the gate: %+v", got)
	}
	evs, err := e.store.ListSecurityEvents(context.Background(), tenant, steward.SecurityEventFilter{DeviceID: "d-1"})
	must(t, err)
	if len(evs) != 0 {
		t.Fatalf("the service stored the event itself too: %+v", evs)
	}
}
