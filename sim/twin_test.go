package sim

import (
	"encoding/json"
	"testing"

	"github.com/steward-iot/steward"
)

// TestFleetReportsTwin sends every simulated device a desired
// configuration: each applies it and reports it back with its version.
func TestFleetReportsTwin(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	s, err := New(e.config(t, t.TempDir(), 3))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	b := e.broker
	b.WaitFor("three connected devices", func() bool { return s.Stats().Connected == 3 })
	desired := `{"interval": 30, "ntp": {"servers": ["pool.ntp.org"]}}`
	for _, d := range s.Devices() {
		b.Send(steward.Topic(d.DeviceID, steward.ChannelTwinDesired), []byte(`{"version": 4, "state": `+desired+`}`))
	}
	for _, d := range s.Devices() {
		topic := steward.Topic(d.DeviceID, steward.ChannelTwinReported)
		b.WaitFor("the report of "+d.Serial, func() bool { return len(b.Messages(topic)) > 0 })
		var rep steward.TwinReportedMessage
		if err := json.Unmarshal(b.Messages(topic)[0], &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Version != 4 || !steward.JSONEqual(rep.State, json.RawMessage(desired)) || len(rep.Errors) != 0 {
			t.Fatalf("%s reported %+v %s", d.Serial, rep, rep.State)
		}
	}
}
