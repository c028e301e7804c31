// Package server assembles a Steward node from its parts: the store, the
// PKI, the bus, the services, the device plane (EST over HTTPS and the MQTT
// broker) and the management plane (REST API). cmd/steward and the
// end-to-end tests start nodes through it; nothing else depends on it.
package server

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/alerting"
	"github.com/steward-iot/steward/analytics"
	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/approvals"
	"github.com/steward-iot/steward/artifacts"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/compliance"
	"github.com/steward-iot/steward/credentials"
	"github.com/steward-iot/steward/decommission"
	"github.com/steward-iot/steward/deploy"
	"github.com/steward-iot/steward/est"
	"github.com/steward-iot/steward/events"
	"github.com/steward-iot/steward/health"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/metrics"
	"github.com/steward-iot/steward/mqtt"
	"github.com/steward-iot/steward/notify"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/postgres"
	"github.com/steward-iot/steward/privacy"
	"github.com/steward-iot/steward/provisioning"
	"github.com/steward-iot/steward/quarantine"
	"github.com/steward-iot/steward/retention"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/telemetry"
	"github.com/steward-iot/steward/tenants"
	"github.com/steward-iot/steward/tufrepo"
	"github.com/steward-iot/steward/twin"
)

// Config is a node's configuration. Zero values take the defaults of
// `steward serve`.
type Config struct {
	DataDir string // default ./steward-data
	// StoreURL selects the store: empty for SQLite in DataDir, or a
	// postgres:// URL for the cluster store.
	StoreURL string
	// SQLiteCacheSize is the most memory, in bytes, the SQLite writer's
	// page cache uses (sqlite.Options.CacheSize; 0: sqlite.DefaultCacheSize).
	// PostgreSQL ignores it.
	SQLiteCacheSize int64
	// MasterKeyFile holds the key-encryption key; default
	// $STEWARD_MASTER_KEY_FILE, else DataDir/master.key (created 0600).
	MasterKeyFile string
	APIAddr       string   // management plane, default 127.0.0.1:8080
	MQTTAddr      string   // device plane MQTT over TLS, default :8883
	DeviceAddr    string   // device plane HTTPS (EST), default :8443
	DeviceHosts   []string // extra names in the server certificate
	MaxPayload    int      // MQTT payload limit, default 256 KiB
	CertValidity  time.Duration
	// NoMetrics turns off GET /metrics on the management plane and the
	// instrumentation behind it.
	NoMetrics bool
	// Telemetry is the telemetry acceptance window and retention; zero
	// fields take telemetry's defaults (7 days late, 5 minutes ahead; raw
	// 7 days, minute rollups 30 days, hour rollups 400 days, day rollups
	// 5 years).
	Telemetry telemetry.Policy
	// AlertInterval is how often alert rules are evaluated, default 15 s.
	AlertInterval time.Duration
	// MaxArtifactSize is the largest artifact an upload may be (default 4 GiB).
	MaxArtifactSize int64
	Logger          *slog.Logger
	Clock           steward.Clock
	// TwinGrace is how long a device's reported configuration may differ
	// from its desired one before it is flagged as drifted (default 10
	// min); the drift check runs every tenth of it, at least every 5 s.
	TwinGrace time.Duration
	// AuditArchive, when set, is a directory where the audit log's
	// retention writes the records whose bodies it is about to remove
	// (docs/security.md, Audit log); empty: they are not kept.
	AuditArchive string
	// Operators configures operator logins: session timeouts, lockout,
	// password hashing, OpenID Connect providers (api.OperatorConfig).
	Operators api.OperatorConfig
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = "steward-data"
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = os.Getenv("STEWARD_MASTER_KEY_FILE")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.APIAddr == "" {
		c.APIAddr = "127.0.0.1:8080"
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = ":8883"
	}
	if c.DeviceAddr == "" {
		c.DeviceAddr = ":8443"
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 256 << 10
	}
	if c.CertValidity == 0 {
		c.CertValidity = 90 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Clock == nil {
		c.Clock = steward.SystemClock{}
	}
}

// Server is a running node.
type Server struct {
	cfg       Config
	Store     steward.Store
	Authority *pki.Authority
	Bus       *inproc.Bus
	Fleet     *lifecycle.Service
	Prov      *provisioning.Service
	Intake    *telemetry.Intake
	// Rollup and Retention are the telemetry rollup and retention jobs.
	Rollup    *telemetry.Rollup
	Retention *telemetry.Retention
	// DataRetention prunes the data classes of RetentionClasses with each
	// tenant's own periods; a package keeping data of its own registers
	// its class in RetentionClasses before Start.
	RetentionClasses *steward.RetentionRegistry
	DataRetention    *retention.Job
	// Privacy serves device consent, export and erasure.
	Privacy *privacy.Service
	// Alerts evaluates the alert rules. Its Leader hook is not wired (there
	// is no leader election yet), so every node of a cluster evaluates; the
	// store's unique index of open alerts keeps them from duplicating alerts.
	Alerts *alerting.Evaluator
	// Notifier sends notifications to the tenants' channels; its worker
	// runs on every node (claiming deliveries is safe on two nodes).
	Notifier *notify.Notifier
	// Quarantine is the tenants' quarantine policies: the allowance the
	// broker asks, the automatic rules (evaluated on every node, over the
	// security events all nodes record) and the quarantine webhook.
	Quarantine *quarantine.Service
	// Artifacts stores artifacts (content in DataDir/blobs) and serves their
	// downloads on the device plane; TUF is the tenants' TUF repositories,
	// whose re-signing job runs on every node (the store keeps one version).
	Artifacts *artifacts.Service
	TUF       *tufrepo.Repo
	// Twins is configuration as a device twin; its drift check runs on
	// every node (the store flags each change once).
	Twins *twin.Service
	// Deployments runs deployments; its ticks run on every node (each
	// deployment is leased to one node at a time). DeploymentStatus takes
	// the devices' update/status reports.
	Deployments      *deploy.Engine
	DeploymentStatus *deploy.Intake
	// Approvals is the two-person rule; its sweep of expired requests
	// runs on every node (expiring twice is harmless).
	Approvals *approvals.Service
	// Tenants suspends, resumes and deletes tenants.
	Tenants *tenants.Service
	// API is the management plane API (its routes are listed by Routes).
	API *api.Server
	// Credentials rotates and revokes device credentials and serves the
	// CRLs; Decommission runs decommissionings and transfers, and purges
	// the data kept after one when its retention ends.
	Credentials  *credentials.Service
	Decommission *decommission.Service
	// Metrics is the node's Prometheus registry and instrumentation; nil
	// with Config.NoMetrics.
	Metrics *metrics.Metrics
	// Audit is the tamper-evident audit log (server/audit.go): every
	// state-changing API request is recorded in it.
	Audit *audit.Log
	// AdminToken is the first admin token's secret, set only on the start
	// that created it.
	AdminToken string

	broker    *mqtt.Broker
	apiLn     net.Listener
	deviceLn  net.Listener
	apiSrv    *http.Server
	deviceSrv *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the store, prepares the PKI and the first tenant, and binds
// every listener, so the addresses are known when it returns. Start serves.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.defaults()
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	s := &Server{cfg: cfg}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if cfg.StoreURL == "" {
		s.Store, err = sqlite.OpenWith(ctx, filepath.Join(cfg.DataDir, "steward.db"), sqlite.Options{CacheSize: cfg.SQLiteCacheSize}, log)
	} else if strings.HasPrefix(cfg.StoreURL, "postgres://") || strings.HasPrefix(cfg.StoreURL, "postgresql://") {
		s.Store, err = postgres.Open(ctx, cfg.StoreURL, log)
	} else {
		return nil, fmt.Errorf("store %q: want empty (SQLite in the data directory) or a postgres:// URL", cfg.StoreURL)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	key, err := pki.LoadOrCreateMasterKey(cfg.MasterKeyFile)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	s.Authority, err = pki.New(ctx, pki.Config{Store: s.Store, MasterKey: key, DeviceCertValidity: cfg.CertValidity, Clock: cfg.Clock, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := s.firstStart(ctx); err != nil {
		return nil, err
	}
	if s.Audit, err = newAuditLog(ctx, s.Store, key, cfg.Clock, log, cfg.AuditArchive); err != nil {
		return nil, err
	}
	var (
		brokerMetrics mqtt.Metrics
		intakeMetrics telemetry.Metrics
	)
	if !cfg.NoMetrics {
		if s.Metrics, err = metrics.New(metrics.Config{Clock: cfg.Clock, Logger: log}); err != nil {
			return nil, err
		}
		if err := s.Metrics.WatchFleet(s.Store); err != nil {
			return nil, err
		}
		if err := s.Metrics.WatchAlerts(s.Store); err != nil {
			return nil, err
		}
		brokerMetrics, intakeMetrics = s.Metrics.MQTT(), s.Metrics.Telemetry()
	}
	s.Bus = inproc.New(log)
	s.Fleet = lifecycle.New(s.Store, s.Bus, cfg.Clock, log)
	s.Fleet.SetAuditor(s.Audit)
	// Every API request and device handshake checks its tenant's status:
	// from memory for a few seconds (docs/operations.md, "Tenants").
	tenantStatus := tenants.NewStatusCache(s.Store, cfg.Clock, 0)
	s.Prov = provisioning.New(provisioning.Config{
		Store: tenants.CachedStore{Store: s.Store, Statuses: tenantStatus}, Authority: s.Authority, Bus: s.Bus, Lifecycle: s.Fleet,
		ParseCSR: pki.ParseCSR, Clock: cfg.Clock, Logger: log, Auditor: s.Audit,
		// s.Quarantine is set below, before any listener serves.
		OnSecurityEvent: func(ctx context.Context, e steward.SecurityEvent) { s.Quarantine.Observe(ctx, e) },
	})
	s.Rollup = telemetry.NewRollup(telemetry.RollupConfig{Store: s.Store, Clock: cfg.Clock, Logger: log, Policy: cfg.Telemetry})
	s.Retention = telemetry.NewRetention(telemetry.RetentionConfig{Store: s.Store, Clock: cfg.Clock, Logger: log, Policy: cfg.Telemetry})
	s.Intake = telemetry.New(telemetry.Config{Store: s.Store, Clock: cfg.Clock, Logger: log, Metrics: intakeMetrics, Policy: cfg.Telemetry, Rollup: s.Rollup,
		OnSamples: func(ctx context.Context, samples []steward.Sample) { s.Quarantine.ObserveSamples(ctx, samples) }}, s.Bus)
	// The audit log is a class of its own: its bodies are pruned, its
	// leaf hashes kept, and its period has a floor (audit.MinRetention).
	if s.RetentionClasses, err = steward.NewRetentionRegistry(append(steward.StoreRetentionClasses(s.Store), s.Audit.Class())...); err != nil {
		return nil, err
	}
	s.DataRetention = retention.New(retention.Config{Store: s.Store, Registry: s.RetentionClasses, Clock: cfg.Clock, Logger: log, Auditor: s.Audit})
	s.Privacy = privacy.New(privacy.Config{Store: s.Store, Clock: cfg.Clock, Logger: log, ConsentChanged: s.Intake.ConsentChanged, Auditor: s.Audit})
	events.New(events.Config{Store: s.Store, Clock: cfg.Clock, Logger: log}, s.Bus)
	// Channel secrets are sealed under the master key; rows stored in
	// clear before that are sealed now (notify/secrets.go).
	keys, err := pki.NewKeyring(key)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	channels := notify.SealedChannels{Store: s.Store, Keys: keys}
	if n, err := notify.SealStoredChannels(ctx, s.Store, keys); err != nil {
		return nil, fmt.Errorf("seal notification channel secrets: %w", err)
	} else if n > 0 {
		log.Info("notification channel secrets stored in clear are now sealed", "channels", n)
	}
	s.Notifier = notify.New(notify.Config{Store: channels, Clock: cfg.Clock, Logger: log, Quarantiner: s.Fleet})
	s.Quarantine = quarantine.New(quarantine.Config{Store: s.Store, Quarantiner: s.Fleet, Bus: s.Bus, Events: s.Notifier, Auditor: s.Audit,
		Clock: cfg.Clock, Logger: log})
	s.Fleet.SetObserver(s.Quarantine)
	if err := s.newArtifacts(key); err != nil {
		return nil, err
	}
	s.Approvals = approvals.New(approvals.Config{Store: s.Store, Clock: cfg.Clock, Logger: log, Auditor: s.Audit,
		OnDecided: func(ctx context.Context, r steward.ApprovalRequest) { s.approvalDecided(ctx, r) }})
	s.Audit.SetApprovals(s.Approvals)
	// Before the deployment engine, which rolls configuration out through it.
	s.Twins = twin.New(twin.Config{Store: s.Store, Bus: s.Bus, Clock: cfg.Clock, Logger: log, Grace: cfg.TwinGrace, OnDrift: twin.Signals(s.Store, log),
		Auditor: s.Audit, RecordSecurityEvent: s.Prov.RecordSecurityEvent})
	s.Tenants = tenants.New(tenants.Config{Store: s.Store, Bus: s.Bus, Approvals: s.Approvals, Clock: cfg.Clock, Logger: log, Auditor: s.Audit,
		Statuses: tenantStatus})
	s.Deployments = deploy.New(deploy.Config{Store: s.Store, Bus: s.Bus, Clock: cfg.Clock, Logger: log, Artifacts: s.Store, Approvals: s.Approvals,
		Configs: s.Twins, Auditor: s.deploymentAuditor()})
	s.DeploymentStatus = deploy.NewIntake(deploy.IntakeConfig{Store: s.Store, Clock: cfg.Clock, Logger: log}, s.Bus)
	s.Alerts = alerting.New(alerting.Config{Store: s.Store, Clock: cfg.Clock, Logger: log, Interval: cfg.AlertInterval, Notifier: s.Notifier})
	s.Credentials = credentials.New(credentials.Config{Store: s.Store, Authority: s.Authority, Fleet: s.Fleet, Bus: s.Bus, Approvals: s.Approvals,
		Auditor: s.Audit, Clock: cfg.Clock, Logger: log})
	s.Decommission = decommission.New(decommission.Config{Store: s.Store, Fleet: s.Fleet, Lifecycle: s.Fleet, Gate: s.Prov, Enroller: s.Prov,
		Bus: s.Bus, Signer: s.Authority, Approvals: s.Approvals, Auditor: s.Audit, Clock: cfg.Clock, Logger: log,
		Removers: []steward.DeviceAccessRemover{s.Twins, s.Deployments}})

	hosts := append([]string(nil), cfg.DeviceHosts...)
	if _, err := s.Authority.ServerCertificate(ctx, hosts); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	getCert := s.Authority.GetCertificateFunc(hosts)

	s.broker, err = mqtt.New(mqtt.Config{
		Addr:       cfg.MQTTAddr,
		TLS:        &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12},
		Gate:       s.Prov,
		Bus:        s.Bus,
		MaxPayload: cfg.MaxPayload,
		Clock:      cfg.Clock,
		Logger:     log,
		Metrics:    brokerMetrics,
		Quarantine: s.Quarantine,
	})
	if err != nil {
		return nil, fmt.Errorf("mqtt broker: %w", err)
	}
	var enroller steward.Enroller = s.Prov
	if s.Metrics != nil {
		if err := s.Metrics.WatchSessions(s.broker.Sessions); err != nil {
			return nil, err
		}
		if err := s.Metrics.WatchDrift(s.Twins.DriftCounts); err != nil {
			return nil, err
		}
		if err := s.Metrics.WatchIntakeQueue(s.Intake.QueueDepth); err != nil {
			return nil, err
		}
		enroller = s.Metrics.Enroller(s.Prov)
	}

	// EST authenticates with the TLS client certificate, which is checked by
	// the service against the registered CAs: the handshake only asks for it.
	deviceTLS := &tls.Config{GetCertificate: getCert, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	deviceMux := http.NewServeMux()
	deviceMux.Handle("/.well-known/est/", est.NewHandler(enroller, log, est.Options{}))
	s.Artifacts.Register(deviceMux, s.Prov)               // /artifacts/, /tuf/, /.well-known/steward/tuf-root
	deviceMux.Handle("/crl/", s.Credentials.CRLHandler()) // public: a CRL is signed
	s.deviceSrv = &http.Server{Handler: deviceMux, TLSConfig: deviceTLS, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if s.deviceLn, err = net.Listen("tcp", cfg.DeviceAddr); err != nil {
		return nil, fmt.Errorf("device plane listener: %w", err)
	}

	// The management plane: the REST API, and Prometheus metrics without
	// authentication, as is customary on a private network (docs/security.md).
	var auditVerifier compliance.AuditVerifier // nil, not a nil *audit.Log, when there is no log
	if s.Audit != nil {
		auditVerifier = s.Audit
	}
	s.API = api.New(api.Config{
		Auditor:   s.Audit,
		Artifacts: s.Artifacts, TUF: s.TUF,
		Credentials:    s.Credentials,
		Decommissioner: s.Decommission,
		Transfers:      s.Decommission,

		Fleet: s.Fleet, Groups: s.Prov, Authority: s.Authority, Store: channels, TenantStatus: tenantStatus,
		Ready: s.ready, Clock: cfg.Clock, Logger: log, TelemetrySchemasChanged: s.Intake.SchemasChanged,
		Analytics:   analytics.New(s.Store, log),
		Health:      health.New(s.Store, cfg.Clock, health.DefaultRules()),
		Notifier:    s.Notifier,
		Privacy:     s.Privacy,
		Quarantine:  s.Quarantine,
		Approvals:   s.Approvals,
		Tenants:     s.Tenants,
		Twins:       s.Twins,
		Deployments: s.Deployments,
		Operators:   cfg.Operators,
		Compliance:  compliance.New(s.Store, auditVerifier, cfg.Clock, log),
	})
	var mgmt http.Handler = s.API
	if s.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.Metrics.Handler())
		mux.Handle("/", mgmt)
		mgmt = mux
	}
	// The API sets the security headers itself; this covers /metrics too.
	mgmt = api.SecurityHeaders(mgmt)
	s.apiSrv = &http.Server{Handler: mgmt, ReadHeaderTimeout: 10 * time.Second}
	if s.apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		return nil, fmt.Errorf("management plane listener: %w", err)
	}
	return s, nil
}

// firstStart creates the default tenant, its device CA and the first admin
// token when the store is new. In a cluster, the node that loses the race
// to create the tenant finds it there and creates nothing.
func (s *Server) firstStart(ctx context.Context) error {
	if _, err := s.Store.GetTenant(ctx, steward.DefaultTenant); err == nil {
		return nil
	} else if !steward.IsNotFound(err) {
		return fmt.Errorf("read default tenant: %w", err)
	}
	err := s.Store.CreateTenant(ctx, steward.Tenant{ID: steward.DefaultTenant, Name: "Default", CreatedAt: s.cfg.Clock.Now()})
	if steward.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create default tenant: %w", err)
	}
	if _, err := s.Authority.DeviceCA(ctx, steward.DefaultTenant); err != nil {
		return fmt.Errorf("create device CA: %w", err)
	}
	secret, _, err := api.CreateToken(ctx, s.Store, steward.DefaultTenant, "first admin", steward.RoleSystem, s.cfg.Clock)
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, "admin.token")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	s.AdminToken = secret
	return nil
}

// ready reports whether the node can serve: the store answers.
func (s *Server) ready(ctx context.Context) error {
	if _, err := s.Store.GetTenant(ctx, steward.DefaultTenant); err != nil {
		return steward.WrapError(steward.CodeUnavailable, err, "store not ready")
	}
	return nil
}

// APIURL is the management plane's base URL.
func (s *Server) APIURL() string { return "http://" + s.apiLn.Addr().String() }

// DeviceURL is the device plane's HTTPS base URL (EST).
func (s *Server) DeviceURL() string { return "https://" + localAddr(s.deviceLn.Addr()) }

// MQTTAddr is the device plane's MQTT address (host:port).
func (s *Server) MQTTAddr() string { return localAddr(s.broker.Addr()) }

// localAddr turns a wildcard listen address into one a local client can dial.
func localAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Start serves on every listener until Close.
func (s *Server) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(7)
	go func() { defer s.wg.Done(); s.Intake.Run(ctx) }()
	go func() { defer s.wg.Done(); s.Alerts.Run(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.Notifier.Run(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Quarantine.Run(ctx) }()
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.TUF.Run(ctx) }()
	go func() { defer s.wg.Done(); s.Artifacts.Run(ctx, time.Hour) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Approvals.Run(ctx, time.Minute) }()
	go func() { defer s.wg.Done(); s.Rollup.Run(ctx) }()
	go func() { defer s.wg.Done(); s.Retention.Run(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.DataRetention.Run(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Prov.RunRefusalAudit(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Twins.Run(ctx, max(s.Twins.Grace()/10, 5*time.Second)) }()
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.Deployments.Run(ctx) }()
	go func() { defer s.wg.Done(); _ = s.DeploymentStatus.Run(ctx) }()
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.Decommission.Run(ctx, time.Hour) }()
	go func() { defer s.wg.Done(); s.Credentials.RunExpiryWatch(ctx, 24*time.Hour) }()
	go func() {
		defer s.wg.Done()
		if err := s.broker.Serve(ctx); err != nil {
			s.cfg.Logger.Error("mqtt broker stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.deviceSrv.ServeTLS(s.deviceLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("device plane stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.apiSrv.Serve(s.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("management plane stopped", "err", err)
		}
	}()
	s.cfg.Logger.Info("steward serving", "api", s.APIURL(), "device", s.DeviceURL(), "mqtt", s.MQTTAddr(), "data", s.cfg.DataDir)
}

// Close stops the listeners, lets the telemetry writer commit what it has
// taken, and closes the store.
func (s *Server) Close() error {
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.apiSrv != nil {
		_ = s.apiSrv.Shutdown(shutdown)
	}
	if s.deviceSrv != nil {
		_ = s.deviceSrv.Shutdown(shutdown)
	}
	if s.broker != nil {
		_ = s.broker.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return s.closeAll()
}

func (s *Server) closeAll() error {
	for _, ln := range []net.Listener{s.apiLn, s.deviceLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if s.Store != nil {
		return s.Store.Close()
	}
	return nil
}

// ServerCAPEM returns the PEM of the CA that signed the server's TLS
// certificates, which devices need to trust the device plane.
func (s *Server) ServerCAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Authority.ServerCA().Raw})
}
