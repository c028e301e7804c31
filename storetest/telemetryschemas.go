package storetest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func schema(tenant, model string, allow ...string) steward.TelemetrySchema {
	if allow == nil {
		allow = []string{}
	}
	return steward.TelemetrySchema{TenantID: tenant, Model: model, Allow: allow, UpdatedAt: t0}
}

// sameSchema fails unless got is want as stored.
func sameSchema(t *testing.T, got, want steward.TelemetrySchema) {
	t.Helper()
	want.UpdatedAt = stored(want.UpdatedAt)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("schema differs:\n got %+v\nwant %+v", got, want)
	}
}

func testTelemetrySchemas(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	got, err := s.ListTelemetrySchemas(c, tenantA)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("new store lists schemas %+v", got)
	}
	_, err = s.GetTelemetrySchema(c, tenantA, "gw-100")
	wantCode(t, err, steward.CodeNotFound)

	gw := schema(tenantA, "gw-100", "cpu", "memory", "biz.*")
	must(t, s.PutTelemetrySchema(c, gw))
	sensor := schema(tenantA, "Sensor Ünit 2") // empty: allows nothing
	must(t, s.PutTelemetrySchema(c, sensor))
	g, err := s.GetTelemetrySchema(c, tenantA, "gw-100")
	must(t, err)
	sameSchema(t, g, gw)
	g, err = s.GetTelemetrySchema(c, tenantA, "Sensor Ünit 2")
	must(t, err)
	sameSchema(t, g, sensor)

	// Put replaces the whole list.
	gw2 := schema(tenantA, "gw-100", "temperature")
	gw2.UpdatedAt = at(time.Hour)
	must(t, s.PutTelemetrySchema(c, gw2))
	list, err := s.ListTelemetrySchemas(c, tenantA)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListTelemetrySchemas = %+v, want 2", list)
	}
	sameSchema(t, list[0], sensor) // "S" sorts before "g"
	sameSchema(t, list[1], gw2)

	must(t, s.DeleteTelemetrySchema(c, tenantA, "gw-100"))
	_, err = s.GetTelemetrySchema(c, tenantA, "gw-100")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteTelemetrySchema(c, tenantA, "gw-100"), steward.CodeNotFound)
	list, err = s.ListTelemetrySchemas(c, tenantA)
	must(t, err)
	if len(list) != 1 || list[0].Model != "Sensor Ünit 2" {
		t.Fatalf("after delete ListTelemetrySchemas = %+v", list)
	}

	// A schema inside a transaction that fails is not kept.
	err = s.InTx(c, func(tx steward.Store) error {
		if err := tx.PutTelemetrySchema(c, schema(tenantA, "rolled-back", "cpu")); err != nil {
			return err
		}
		return errTest
	})
	if err != errTest {
		t.Fatalf("InTx = %v, want the function's error", err)
	}
	_, err = s.GetTelemetrySchema(c, tenantA, "rolled-back")
	wantCode(t, err, steward.CodeNotFound)
}

func testTelemetrySchemasInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	valid := schema(tenantA, "gw-100", "cpu")
	cases := []struct {
		name string
		edit func(*steward.TelemetrySchema)
		code steward.Code
	}{
		{"no tenant", func(x *steward.TelemetrySchema) { x.TenantID = "" }, steward.CodeInvalid},
		{"unknown tenant", func(x *steward.TelemetrySchema) { x.TenantID = "nobody" }, steward.CodeNotFound},
		{"no model", func(x *steward.TelemetrySchema) { x.Model = "" }, steward.CodeInvalid},
		{"model with slash", func(x *steward.TelemetrySchema) { x.Model = "gw/100" }, steward.CodeInvalid},
		{"model with spaces around", func(x *steward.TelemetrySchema) { x.Model = " gw-100" }, steward.CodeInvalid},
		{"model with control", func(x *steward.TelemetrySchema) { x.Model = "gw\n100" }, steward.CodeInvalid},
		{"model too long", func(x *steward.TelemetrySchema) { x.Model = strings.Repeat("m", steward.MaxModelLen+1) }, steward.CodeInvalid},
		{"nil allow", func(x *steward.TelemetrySchema) { x.Allow = nil }, steward.CodeInvalid},
		{"bad name", func(x *steward.TelemetrySchema) { x.Allow = []string{"cpu", "temp °C"} }, steward.CodeInvalid},
		{"bare star", func(x *steward.TelemetrySchema) { x.Allow = []string{"*"} }, steward.CodeInvalid},
		{"star without dot", func(x *steward.TelemetrySchema) { x.Allow = []string{"biz*"} }, steward.CodeInvalid},
		{"star inside", func(x *steward.TelemetrySchema) { x.Allow = []string{"biz.*.x"} }, steward.CodeInvalid},
		{"duplicate", func(x *steward.TelemetrySchema) { x.Allow = []string{"cpu", "cpu"} }, steward.CodeInvalid},
		{"too many", func(x *steward.TelemetrySchema) {
			x.Allow = nil
			for i := range steward.MaxSchemaAllowLength + 1 {
				x.Allow = append(x.Allow, did("m", i))
			}
		}, steward.CodeInvalid},
		{"no time", func(x *steward.TelemetrySchema) { x.UpdatedAt = time.Time{} }, steward.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := valid
			sc.Allow = append([]string(nil), valid.Allow...)
			tc.edit(&sc)
			wantCode(t, s.PutTelemetrySchema(c, sc), tc.code)
		})
	}
	for _, tenant := range []string{tenantA, tenantB, "nobody"} {
		list, err := s.ListTelemetrySchemas(c, tenant)
		must(t, err)
		if len(list) != 0 {
			t.Fatalf("refused puts stored %+v in %s", list, tenant)
		}
	}
}

func testTelemetrySchemasIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	a := schema(tenantA, "gw-100", "cpu")
	must(t, s.PutTelemetrySchema(c, a))

	// B sees nothing of A's and cannot delete it.
	_, err := s.GetTelemetrySchema(c, tenantB, "gw-100")
	wantCode(t, err, steward.CodeNotFound)
	list, err := s.ListTelemetrySchemas(c, tenantB)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists %+v", list)
	}
	wantCode(t, s.DeleteTelemetrySchema(c, tenantB, "gw-100"), steward.CodeNotFound)

	// B's schema of the same model is its own.
	b := schema(tenantB, "gw-100", "memory", "biz.*")
	must(t, s.PutTelemetrySchema(c, b))
	g, err := s.GetTelemetrySchema(c, tenantA, "gw-100")
	must(t, err)
	sameSchema(t, g, a)
	g, err = s.GetTelemetrySchema(c, tenantB, "gw-100")
	must(t, err)
	sameSchema(t, g, b)
	must(t, s.DeleteTelemetrySchema(c, tenantB, "gw-100"))
	g, err = s.GetTelemetrySchema(c, tenantA, "gw-100")
	must(t, err)
	sameSchema(t, g, a)
}
