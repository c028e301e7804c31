package tufclient

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/steward-iot/steward/agent"
)

// AgentFetcher is an agent's Fetcher made from the agent itself: the TUF
// client needs the device's tenant and certificate, which exist only once
// the agent has enrolled, so it is made on first use. Set Agent once
// agent.New has returned; the agent's Config takes the AgentFetcher.
type AgentFetcher struct {
	BaseURL string // the device plane, https://host:8443
	Dir     string // the client's state (see Config.Dir)
	Logger  *slog.Logger
	Agent   *agent.Agent

	mu sync.Mutex
	c  *Client
}

var _ agent.Fetcher = (*AgentFetcher)(nil)

// Fetch implements agent.Fetcher.
func (f *AgentFetcher) Fetch(ctx context.Context, t agent.UpdateTarget, progress func(done, total int64)) (string, error) {
	c, err := f.client(ctx)
	if err != nil {
		return "", err // transient: the next attempt tries again
	}
	return c.Fetch(ctx, t, progress)
}

// Prepare implements agent.Preparer: the agent calls it once it is
// enrolled, and the client takes the tenant's trusted root then.
func (f *AgentFetcher) Prepare(ctx context.Context) error {
	_, err := f.client(ctx)
	return err
}

var _ agent.Preparer = (*AgentFetcher)(nil)

func (f *AgentFetcher) client(ctx context.Context) (*Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c != nil {
		return f.c, nil
	}
	if f.Agent == nil || f.Agent.TenantID() == "" {
		return nil, errors.New("the device is not enrolled yet")
	}
	c, err := New(Config{
		BaseURL:    f.BaseURL,
		TenantID:   f.Agent.TenantID(),
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: f.Agent.DeviceTLS()}},
		Dir:        f.Dir,
		Logger:     f.Logger,
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
