package storetest

import (
	"fmt"
	"testing"

	"github.com/steward-iot/steward"
)

// testDeviceDeployments: a device's rows in the deployments of the given
// states, by deployment ID, across more deployments than a page of them;
// never another tenant's, and an unknown state is refused.
func testDeviceDeployments(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	dev, other := did("dd", 1), did("dd", 2)
	states := []steward.DeploymentState{steward.DeploymentRunning, steward.DeploymentPaused, steward.DeploymentCompleted}
	var rows []steward.DeploymentDevice
	must(t, s.InTx(c, func(tx steward.Store) error {
		for i := range 1002 {
			d := deployment(tenantA, fmt.Sprintf("dp-dd-%04d", i))
			d.State = states[i%len(states)]
			if err := tx.CreateDeployment(c, d); err != nil {
				return err
			}
			if i%100 == 0 || i == 1001 {
				rows = append(rows, deploymentRows(tenantA, d.ID, 1, 0)...)
				rows[len(rows)-1].DeviceID = dev
			}
			rows = append(rows, deploymentRows(tenantA, d.ID, 1, 0)...)
			rows[len(rows)-1].DeviceID = other
		}
		// Tenant B has the same device ID in a deployment of its own.
		if err := tx.CreateDeployment(c, deployment(tenantB, "dp-dd-b")); err != nil {
			return err
		}
		rows = append(rows, deploymentRows(tenantB, "dp-dd-b", 1, 0)...)
		rows[len(rows)-1].DeviceID = dev
		return nil
	}))
	_, err := s.AddDeploymentDevices(c, rows)
	must(t, err)

	ids := func(rs []steward.DeploymentDevice) []string {
		var out []string
		for _, r := range rs {
			if r.TenantID != tenantA || r.DeviceID != dev {
				t.Fatalf("row of another tenant or device: %+v", r)
			}
			out = append(out, r.DeploymentID)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		states []steward.DeploymentState
		want   []string
	}{
		// i%3 == 0 running, 1 paused, 2 completed: of i = 0, 100, …, 1000
		// and 1001.
		{"every state", nil, []string{"dp-dd-0000", "dp-dd-0100", "dp-dd-0200", "dp-dd-0300", "dp-dd-0400", "dp-dd-0500",
			"dp-dd-0600", "dp-dd-0700", "dp-dd-0800", "dp-dd-0900", "dp-dd-1000", "dp-dd-1001"}},
		{"running", []steward.DeploymentState{steward.DeploymentRunning}, []string{"dp-dd-0000", "dp-dd-0300", "dp-dd-0600", "dp-dd-0900"}},
		{"paused or completed", []steward.DeploymentState{steward.DeploymentPaused, steward.DeploymentCompleted},
			[]string{"dp-dd-0100", "dp-dd-0200", "dp-dd-0400", "dp-dd-0500", "dp-dd-0700", "dp-dd-0800", "dp-dd-1000", "dp-dd-1001"}},
		{"no deployment in the state", []steward.DeploymentState{steward.DeploymentDraft}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListDeviceDeployments(c, tenantA, dev, tc.states)
			must(t, err)
			eqStrings(t, "deployments", ids(got), tc.want)
		})
	}
	got, err := s.ListDeviceDeployments(c, tenantA, dev, []steward.DeploymentState{steward.DeploymentRunning})
	must(t, err)
	if len(got) > 0 && (got[0].State != steward.UpdatePending || got[0].ToVersion != "1.5.0" || got[0].Window != -1) {
		t.Fatalf("row %+v", got[0])
	}
	if got, err := s.ListDeviceDeployments(c, tenantB, dev, nil); err != nil || len(got) != 1 || got[0].DeploymentID != "dp-dd-b" {
		t.Fatalf("tenant B: %+v, %v", got, err)
	}
	if got, err := s.ListDeviceDeployments(c, tenantA, did("dd", 9), nil); err != nil || len(got) != 0 {
		t.Fatalf("a device in no deployment: %+v, %v", got, err)
	}
	_, err = s.ListDeviceDeployments(c, tenantA, dev, []steward.DeploymentState{"sideways"})
	wantCode(t, err, steward.CodeInvalid)
}
