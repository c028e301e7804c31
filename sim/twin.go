package sim

import (
	"encoding/json"
	"sync"

	"github.com/steward-iot/steward/agent/config"
)

// configHandlers are a simulated device's configuration handlers: every
// key is taken as it comes (config.Any) and kept in memory, as a device
// would hold its settings, so that the device reports its desired state
// back and the twin goes in sync. The agent keeps the applied state in the
// device's state directory, so a simulated reboot keeps it too.
func (s *Sim) configHandlers(d *device) map[string]config.Handler {
	var (
		mu     sync.Mutex
		values = map[string]json.RawMessage{}
	)
	return map[string]config.Handler{config.Any: config.HandlerFunc(func(key string, v json.RawMessage) error {
		mu.Lock()
		defer mu.Unlock()
		if v == nil {
			delete(values, key)
			return nil
		}
		values[key] = v
		s.cfg.Logger.Debug("simulated configuration applied", "serial", d.serial, "key", key)
		return nil
	})}
}
