// Package api is Steward's management plane REST API: JSON over HTTP under
// /api/v1, bearer-token authentication, RFC 9457 problem documents for every
// error, and a hand-written OpenAPI 3.1 document at /api/v1/openapi.json.
//
// The package is named api rather than http so that it does not shadow
// net/http in the files that use both.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// MaxBodyBytes is the largest request body the API reads; a larger one is
// refused with 413 before anything is written.
const MaxBodyBytes = 1 << 20

// Config is what the API serves from.
type Config struct {
	Fleet     steward.Fleet
	Groups    steward.EnrollmentGroups
	Authority steward.Authority
	// Store is used for tenants, API tokens and the read-only device
	// histories (events, presence); devices and groups go through their
	// services.
	Store steward.Store
	// Ready reports whether the node can take traffic (GET /readyz); nil
	// means always ready.
	Ready  func(ctx context.Context) error
	Clock  steward.Clock
	Logger *slog.Logger
	// Analytics answers /api/v1/fleet/stats and /api/v1/fleet/outliers;
	// nil makes them 503.
	Analytics steward.FleetAnalytics
	// TelemetrySchemasChanged, when set, is told the tenant of each change
	// of its telemetry schemas (the intake's SchemasChanged), so that the
	// change applies on this node at once.
	TelemetrySchemasChanged func(tenantID string)
	// Health answers /api/v1/devices/{id}/health; nil makes it 503.
	Health steward.FleetHealth
	// Limits are the request rate per token and the authentication
	// failure limit per client address; zero fields take the defaults.
	Limits Limits
	// Compliance builds compliance reports (GET /api/v1/compliance/report);
	// nil makes that 503.
	Compliance ComplianceReports
	// Notifier sends test notifications (POST
	// /api/v1/notification-channels/{id}/test); nil makes that 503.
	Notifier NotificationTester
	// Credentials rotates and revokes credentials and serves CRLs (pki.go);
	// Decommissioner decommissions and transfers devices
	// (decommission.go). Nil makes their routes 503.
	Credentials    steward.Credentials
	Decommissioner steward.Decommissioner
	// Transfers moves devices between tenants (transfers.go); nil makes
	// its routes 503.
	Transfers steward.TenantTransfers
	// Approvals is the two-person rule (/api/v1/approvals,
	// /api/v1/approval-policies); nil makes those routes 503.
	Approvals ApprovalService
	// Tenants suspends, resumes and deletes tenants (tenants.go); nil
	// makes those routes 503.
	Tenants TenantService
	// Privacy serves device export, erasure and consent (privacy.go); nil
	// makes those routes 503.
	Privacy PrivacyService
	// Quarantine keeps the tenants' quarantine policies (quarantine.go);
	// nil makes those routes 503.
	Quarantine QuarantinePolicyService
	// TenantStatus, when set, reads the caller's tenant for the check on
	// every request that it is not suspended (tenants.StatusCache answers
	// from memory for a few seconds); nil reads the Store each time.
	TenantStatus interface {
		GetTenant(ctx context.Context, id string) (steward.Tenant, error)
	}
	// Operators configures operator logins: sessions, lockout, password
	// hashing, OpenID Connect (sessions.go).
	Operators OperatorConfig
	// Twins serves configuration templates, versions and device twins
	// (twin.go); nil makes those routes 503.
	Twins TwinService
	// Artifacts and TUF serve artifacts, resumable uploads and the tenant's
	// TUF repository (artifacts.go); nil makes those routes 503.
	Artifacts ArtifactService
	TUF       TUFService
	// Deployments runs deployments (deployments.go); nil makes those
	// routes but the reads 503.
	Deployments DeploymentService
	// Auditor records every state-changing request (audit.go); when it
	// is also an AuditLog (audit.Log is) it serves /api/v1/audit. Nil
	// records nothing and makes those routes 503.
	Auditor steward.Auditor
}

// Server is the management plane API, an http.Handler.
type Server struct {
	cfg    Config
	log    *slog.Logger
	clock  steward.Clock
	mux    *http.ServeMux
	routes []route

	failures *failureLimiter // authentication failures per client address
	tokens   *tokenLimiter   // requests per token
	op       operatorState   // operator logins (sessions.go)
}

// public is the permission of a route that needs no token.
const public steward.Permission = ""

// route is one registered (method, path) pair with the permission it
// needs, kept so that the OpenAPI document and the permission walk can be
// checked against what is really served.
type route struct {
	method string
	path   string
	perm   steward.Permission
}

// handlerFunc serves one authenticated request; an error it returns becomes
// a problem document.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p principal) error

// New builds the API server. Clock and Logger default to the system clock
// and a discarding logger.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = steward.SystemClock{}
	}
	s.cfg.Limits.defaults()
	s.failures = newFailureLimiter(s.cfg.Limits)
	s.tokens = newTokenLimiter(s.cfg.Limits)

	s.handle("GET", "/healthz", public, s.healthz)
	s.handle("GET", "/readyz", public, s.readyz)
	s.handle("GET", "/api/v1/openapi.json", public, s.openAPI)

	s.handle("GET", "/api/v1/enrollment-groups", steward.PermEnrollmentRead, s.listGroups)
	s.handle("POST", "/api/v1/enrollment-groups", steward.PermEnrollmentWrite, s.createGroup)
	s.handle("GET", "/api/v1/enrollment-groups/{id}", steward.PermEnrollmentRead, s.getGroup)
	s.handle("DELETE", "/api/v1/enrollment-groups/{id}", steward.PermEnrollmentWrite, s.deleteGroup)

	s.handle("GET", "/api/v1/devices", steward.PermDevicesRead, s.listDevices)
	s.handle("GET", "/api/v1/devices/{id}", steward.PermDevicesRead, s.getDevice)
	s.handle("PATCH", "/api/v1/devices/{id}", steward.PermDevicesWrite, s.patchDevice)
	s.handle("POST", "/api/v1/devices/{id}/quarantine", steward.PermDevicesQuarantine, s.quarantineDevice)
	s.handle("POST", "/api/v1/devices/{id}/release", steward.PermDevicesQuarantine, s.releaseDevice)
	s.handle("POST", "/api/v1/devices/{id}/maintenance", steward.PermDevicesWrite, s.startMaintenance)
	s.handle("POST", "/api/v1/devices/{id}/maintenance/end", steward.PermDevicesWrite, s.endMaintenance)
	s.handle("POST", "/api/v1/devices/{id}/revoke", steward.PermDevicesRevoke, s.revokeDevice)
	s.handle("POST", "/api/v1/devices/{id}/commands", steward.PermDevicesCommand, s.sendCommand)
	s.handle("GET", "/api/v1/devices/{id}/telemetry/latest", steward.PermTelemetryRead, s.latestTelemetry)
	s.handle("GET", "/api/v1/devices/{id}/telemetry", steward.PermTelemetryRead, s.deviceTelemetry)
	s.handle("GET", "/api/v1/devices/{id}/events", steward.PermDevicesRead, s.listDeviceEvents)
	s.handle("GET", "/api/v1/devices/{id}/presence", steward.PermDevicesRead, s.devicePresence)
	s.handle("GET", "/api/v1/devices/{id}/health", steward.PermDevicesRead, s.deviceHealth)
	s.handle("GET", "/api/v1/security-events", steward.PermDevicesRead, s.listSecurityEvents)
	s.handle("GET", "/api/v1/fleet/stats", steward.PermDevicesRead, s.fleetStats)
	s.handle("GET", "/api/v1/fleet/outliers", steward.PermDevicesRead, s.fleetOutliers)

	s.handle("GET", "/api/v1/telemetry-schemas", steward.PermTelemetryRead, s.listTelemetrySchemas)
	s.handle("GET", "/api/v1/telemetry-schemas/{model}", steward.PermTelemetryRead, s.getTelemetrySchema)
	s.handle("PUT", "/api/v1/telemetry-schemas/{model}", steward.PermTelemetryWrite, s.putTelemetrySchema)
	s.handle("DELETE", "/api/v1/telemetry-schemas/{model}", steward.PermTelemetryWrite, s.deleteTelemetrySchema)

	s.handle("GET", "/api/v1/alert-rules", steward.PermAlertsRead, s.listAlertRules)
	s.handle("POST", "/api/v1/alert-rules", steward.PermAlertsWrite, s.createAlertRule)
	s.handle("GET", "/api/v1/alert-rules/{id}", steward.PermAlertsRead, s.getAlertRule)
	s.handle("PUT", "/api/v1/alert-rules/{id}", steward.PermAlertsWrite, s.putAlertRule)
	s.handle("DELETE", "/api/v1/alert-rules/{id}", steward.PermAlertsWrite, s.deleteAlertRule)
	s.handle("GET", "/api/v1/alerts", steward.PermAlertsRead, s.listAlerts)
	s.handle("GET", "/api/v1/alerts/{id}", steward.PermAlertsRead, s.getAlert)
	s.handle("POST", "/api/v1/alerts/{id}/ack", steward.PermAlertsWrite, s.ackAlert)
	s.handle("POST", "/api/v1/alerts/{id}/assign", steward.PermAlertsWrite, s.assignAlert)

	s.handle("GET", "/api/v1/ca/device", steward.PermPKIRead, s.deviceCA)
	s.handle("GET", "/api/v1/ca/server", steward.PermPKIRead, s.serverCA)

	s.handle("GET", "/api/v1/tokens", steward.PermTokensAdmin, s.listTokens)
	s.handle("POST", "/api/v1/tokens", steward.PermTokensAdmin, s.createToken)
	s.handle("DELETE", "/api/v1/tokens/{id}", steward.PermTokensAdmin, s.deleteToken)

	s.handle("GET", "/api/v1/tenants", steward.PermTenantsAdmin, s.listTenants)
	s.handle("POST", "/api/v1/tenants", steward.PermTenantsAdmin, s.createTenant)

	s.handle("GET", "/api/v1/notification-channels", steward.PermNotificationsRead, s.listChannels)
	s.handle("POST", "/api/v1/notification-channels", steward.PermNotificationsWrite, s.createChannel)
	s.handle("GET", "/api/v1/notification-channels/{id}", steward.PermNotificationsRead, s.getChannel)
	s.handle("DELETE", "/api/v1/notification-channels/{id}", steward.PermNotificationsWrite, s.deleteChannel)
	s.handle("POST", "/api/v1/notification-channels/{id}/test", steward.PermNotificationsWrite, s.testChannel)
	s.handle("GET", "/api/v1/deliveries", steward.PermNotificationsRead, s.listDeliveries)
	s.handle("GET", "/api/v1/silences", steward.PermNotificationsRead, s.listSilences)
	s.handle("POST", "/api/v1/silences", steward.PermNotificationsWrite, s.createSilence)
	s.handle("DELETE", "/api/v1/silences/{id}", steward.PermNotificationsWrite, s.expireSilence)
	s.handle("GET", "/api/v1/notification-policies", steward.PermNotificationsRead, s.listPolicies)
	s.handle("POST", "/api/v1/notification-policies", steward.PermNotificationsWrite, s.createPolicy)
	s.handle("GET", "/api/v1/notification-policies/{id}", steward.PermNotificationsRead, s.getPolicy)
	s.handle("PUT", "/api/v1/notification-policies/{id}", steward.PermNotificationsWrite, s.updatePolicy)
	s.handle("DELETE", "/api/v1/notification-policies/{id}", steward.PermNotificationsWrite, s.deletePolicy)

	s.registerOperators()
	s.registerPrivacy()
	s.registerQuarantine()
	s.registerApprovals()
	s.registerTenants()
	s.registerPKI()
	s.registerDecommission()
	s.registerTransfers()
	s.registerTwins()
	s.registerArtifacts()
	s.registerDeployments()
	s.registerAudit()
	s.registerCompliance()
	s.registerFallbacks()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID(r)
	setSecurityHeaders(w, r)
	w.Header().Set("X-Request-ID", id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	rec := &statusRecorder{ResponseWriter: w}
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("api handler panicked", "request_id", id, "method", r.Method, "path", r.URL.Path, "panic", v)
			if rec.status == 0 {
				s.writeError(rec, r, steward.WrapError(steward.CodeInternal, fmt.Errorf("panic: %v", v), "internal error"))
			}
		}
		s.log.Debug("api request", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration", time.Since(start))
	}()
	s.mux.ServeHTTP(rec, r)
}

// handle registers a route that needs permission perm (public for none);
// every handler runs behind authentication and the permission check, and
// turns its error into a problem document.
func (s *Server) handle(method, path string, perm steward.Permission, h handlerFunc) {
	if perm != public && !perm.Valid() {
		panic(fmt.Sprintf("api: route %s %s declares unknown permission %q", method, path, perm))
	}
	s.routes = append(s.routes, route{method: method, path: path, perm: perm})
	s.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
		var p principal
		if method != "GET" {
			rec := &statusRecorder{ResponseWriter: w}
			w = rec
			defer s.auditRequest(r, method, path, perm, &p, rec)
		}
		if perm != public {
			var err error
			if p, err = s.authenticateLimited(r); err != nil {
				s.auditAuthFailure(r, method, path, err)
				s.writeError(w, r, err)
				return
			}
			if err := s.checkTenantActive(r.Context(), p); err != nil {
				s.writeError(w, r, err)
				return
			}
			if !p.can(perm) {
				s.writeError(w, r, steward.Errorf(steward.CodePermissionDenied, "this operation needs the permission %s", perm))
				return
			}
			if err := s.checkDeviceScope(r, path, p); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if err := h(w, r, p); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// registerFallbacks makes the mux's own 404 and 405 answers problem
// documents too: a method-less pattern per routed path answers 405 with the
// Allow header (a pattern with a method is more specific, so it wins when
// the method matches), and "/" answers 404 for everything else.
func (s *Server) registerFallbacks() {
	allowed := map[string][]string{}
	var paths []string
	for _, rt := range s.routes {
		if _, ok := allowed[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
		if rt.method == "GET" {
			allowed[rt.path] = append(allowed[rt.path], "HEAD")
		}
	}
	for _, path := range paths {
		methods := allowed[path]
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, &steward.Error{Code: codeMethodNotAllowed,
				Message: fmt.Sprintf("method %s is not allowed here; allowed: %s", r.Method, allow)})
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, steward.Errorf(steward.CodeNotFound, "no such resource: %s", r.URL.Path))
	})
}

// healthz answers as long as the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ principal) error {
	return writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// readyz asks the node whether it can take traffic.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.Warn("not ready", "request_id", requestIDFrom(r.Context()), "err", err)
			return &steward.Error{Code: steward.CodeUnavailable, Message: "not ready", Err: err}
		}
	}
	return writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string `json:"status"`
}

// statusRecorder remembers the status a handler wrote, for the access log
// and for the panic handler (which must not write a second header).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
