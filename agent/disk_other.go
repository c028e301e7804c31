//go:build !linux

package agent

// diskUsed is not measured off Linux, the agent's platform.
func diskUsed(string) (float64, bool) { return 0, false }
