package steward

import "strings"

// MetricKind says how a metric's values add up over time.
type MetricKind string

// The metric kinds.
const (
	// MetricGauge is a reading at an instant (a temperature, a ratio): a
	// window's rollup is read as its mean, min and max.
	MetricGauge MetricKind = "gauge"
	// MetricDelta counts events since the device's previous sample of the
	// metric (not since boot), so that a window's sum is the number of
	// events in it and a device restart resets nothing.
	MetricDelta MetricKind = "delta"
)

// MetricCategory groups the standard metrics.
type MetricCategory string

// The metric categories.
const (
	CategoryConnectivity MetricCategory = "connectivity"
	CategoryHealth       MetricCategory = "health"
	CategoryApplication  MetricCategory = "application"
	CategorySecurity     MetricCategory = "security"
	CategoryBusiness     MetricCategory = "business"
)

// MetricDef describes one metric of the standard vocabulary.
type MetricDef struct {
	Name        string         `json:"name"`
	Unit        string         `json:"unit"`
	Kind        MetricKind     `json:"kind"`
	Category    MetricCategory `json:"category"`
	Description string         `json:"description"`
}

// The names of the standard metrics (docs/metrics.md). They are a contract
// between devices, dashboards and telemetry schemas: a name, once
// published, keeps its unit and meaning.
const (
	MetricNetRSSI       = "net.rssi"
	MetricNetLatency    = "net.latency"
	MetricNetLoss       = "net.loss"
	MetricNetReconnects = "net.reconnects"

	MetricCPU         = "cpu"
	MetricMemory      = "memory"
	MetricTemperature = "temperature"
	MetricBattery     = "battery"
	MetricDisk        = "disk"
	MetricHWErrors    = "hw.errors"
	MetricUptime      = "uptime"
	MetricLoad1       = "load1"

	MetricAppCrashes      = "app.crashes"
	MetricAppRestarts     = "app.restarts"
	MetricAppMsgDelivered = "app.msg.delivered"
	MetricAppMsgFailed    = "app.msg.failed"
	MetricAppProcessed    = "app.processed"

	MetricSecAuthFailures     = "sec.auth.failures"
	MetricSecCertProblems     = "sec.cert.problems"
	MetricSecConfigChanges    = "sec.config.changes"
	MetricSecPolicyViolations = "sec.policy.violations"
)

// BusinessMetricPrefix starts the free business metrics (biz.orders,
// biz.litres_dispensed): their names, units and meanings are the
// operator's, Steward only keeps them apart from the standard ones.
const BusinessMetricPrefix = "biz."

// AttrNetType is the attributes key of a device's network type (ethernet,
// wifi, cellular, lora…): a property of the device, reported with its
// inventory, not a metric.
const AttrNetType = "net.type"

// MaxMetricNameLen is the longest metric name.
const MaxMetricNameLen = 128

// ValidMetricName reports whether name can name a metric: 1 to 128
// letters, digits, '_', '-' or '.'.
func ValidMetricName(name string) bool {
	if name == "" || len(name) > MaxMetricNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// StandardMetrics returns the standard metric vocabulary, by category then
// name as in docs/metrics.md. Each call returns a new slice.
func StandardMetrics() []MetricDef {
	g, d := MetricGauge, MetricDelta
	conn, health, app, sec := CategoryConnectivity, CategoryHealth, CategoryApplication, CategorySecurity
	return []MetricDef{
		{MetricNetRSSI, "dBm", g, conn, "received signal strength of the uplink (Wi-Fi, cellular, LoRa)"},
		{MetricNetLatency, "ms", g, conn, "round-trip time to the server"},
		{MetricNetLoss, "ratio", g, conn, "fraction of packets or messages lost, 0 to 1"},
		{MetricNetReconnects, "count", d, conn, "connections to the server made again since the previous sample"},

		{MetricCPU, "ratio", g, health, "busy fraction of all CPUs since the previous sample, 0 to 1"},
		{MetricMemory, "ratio", g, health, "used fraction of memory (1 - available/total), 0 to 1"},
		{MetricTemperature, "°C", g, health, "hottest temperature sensor (SoC, thermal zone)"},
		{MetricBattery, "ratio", g, health, "battery charge, 0 (empty) to 1 (full)"},
		{MetricDisk, "ratio", g, health, "used fraction of the data file system, 0 to 1"},
		{MetricHWErrors, "count", d, health, "hardware errors (ECC, I/O, sensor faults) since the previous sample"},
		{MetricUptime, "s", g, health, "time since the device booted"},
		{MetricLoad1, "tasks", g, health, "one-minute load average: runnable and waiting tasks"},

		{MetricAppCrashes, "count", d, app, "application crashes since the previous sample"},
		{MetricAppRestarts, "count", d, app, "application restarts (crash or not) since the previous sample"},
		{MetricAppMsgDelivered, "count", d, app, "application messages delivered since the previous sample"},
		{MetricAppMsgFailed, "count", d, app, "application messages that failed for good since the previous sample"},
		{MetricAppProcessed, "count", d, app, "work items (readings, jobs, transactions) processed since the previous sample"},

		{MetricSecAuthFailures, "count", d, sec, "failed local logins or authentications on the device since the previous sample"},
		{MetricSecCertProblems, "count", d, sec, "certificate validation problems the device saw since the previous sample"},
		{MetricSecConfigChanges, "count", d, sec, "local configuration changes since the previous sample"},
		{MetricSecPolicyViolations, "count", d, sec, "local security policy violations since the previous sample"},
	}
}

// LookupMetric returns the standard definition of name. A business
// metric (BusinessMetricPrefix) has a definition of category business
// without a unit or kind, which are the operator's; any other name is not
// standard.
func LookupMetric(name string) (MetricDef, bool) {
	for _, m := range StandardMetrics() {
		if m.Name == name {
			return m, true
		}
	}
	if strings.HasPrefix(name, BusinessMetricPrefix) && len(name) > len(BusinessMetricPrefix) && ValidMetricName(name) {
		return MetricDef{Name: name, Category: CategoryBusiness, Description: "business metric"}, true
	}
	return MetricDef{}, false
}
