package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"

	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/tufclient"
)

// deviceFetcher is the agent's Fetcher in this command: the TUF client,
// made on first use because it needs the device's tenant and certificate,
// which exist only once the agent has enrolled.
type deviceFetcher struct {
	baseURL, dir string
	logger       *slog.Logger
	a            *agent.Agent // set once the agent exists

	mu sync.Mutex
	c  *tufclient.Client
}

// Fetch implements agent.Fetcher.
func (f *deviceFetcher) Fetch(ctx context.Context, t agent.UpdateTarget, progress func(done, total int64)) (string, error) {
	c, err := f.client(ctx)
	if err != nil {
		return "", err // transient: the next attempt tries again
	}
	return c.Fetch(ctx, t, progress)
}

func (f *deviceFetcher) client(ctx context.Context) (*tufclient.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c != nil {
		return f.c, nil
	}
	tenant := f.a.TenantID()
	if tenant == "" {
		return nil, fmt.Errorf("the device is not enrolled yet")
	}
	c, err := tufclient.New(tufclient.Config{
		BaseURL:    f.baseURL,
		TenantID:   tenant,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: f.a.DeviceTLS()}},
		Dir:        f.dir,
		Logger:     f.logger,
	})
	if err != nil {
		return nil, err
	}
	// The trusted root is fetched once over mutual TLS; after that only
	// TUF's own root rotation changes it.
	if err := c.Bootstrap(ctx); err != nil {
		return nil, err
	}
	f.c = c
	return c, nil
}

// healthCheck runs the operator's health check command through the shell:
// exit status 0 keeps a newly installed version, anything else rolls it
// back.
func healthCheck(command string, logger *slog.Logger) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		logger.Info("health check passed", "output", strings.TrimSpace(string(out)))
		return nil
	}
}
