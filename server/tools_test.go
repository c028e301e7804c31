package server

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestOutsideTools runs testdata/e2e.sh: the zero-touch path and its
// refusals with openssl, curl and mosquitto_pub/sub against a live node.
func TestOutsideTools(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "openssl", "curl", "mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install openssl curl mosquitto-clients); .ci/run installs them", tool)
		}
	}
	n := startNode(t)
	host, port, _ := net.SplitHostPort(n.MQTTAddr())
	script, _ := filepath.Abs("testdata/e2e.sh")
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(),
		"API="+n.APIURL(), "TOKEN="+n.AdminToken, "EST="+n.DeviceURL(),
		"MQTT_HOST="+host, "MQTT_PORT="+port, "WORK="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("e2e.sh: %v", err)
	}
}
