package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

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
