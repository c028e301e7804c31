package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/steward-iot/steward"
)

// Command names of the credential lifecycle (see steward.CommandRotateCredentials
// and steward.CommandWipe).
const (
	CommandRotateCredentials = steward.CommandRotateCredentials
	CommandWipe              = steward.CommandWipe
)

// WipedFile marks a state directory whose credentials were erased on
// command: an agent refuses to start on it, so that a wiped device does
// not enroll again by itself. Removing it (and provisioning the device
// again) is a person's decision.
const WipedFile = "wiped"

// ErrWiped is what Run returns on a state directory that was wiped.
var ErrWiped = errors.New("the device was wiped on command and is not provisioned again by itself")

// rotateReconnectWait bounds the wait for a connection made with the new
// certificate after a rotation.
const rotateReconnectWait = time.Minute

// wipedFiles are the agent's files a wipe erases: the operational key and
// certificate, a key waiting for its certificate, and what the agent
// remembers of commands and updates. The factory identity is not among
// them: it belongs to the device (secure element, read-only partition), and
// a wiped device can be provisioned again only with it.
var wipedFiles = []string{IdentityFile, PendingKeyFile, rebootFile, updateFile}

// credentialCommand answers rotate-credentials and wipe, which need the
// agent's context; every other command goes to handleCommand.
func (a *Agent) credentialCommand(ctx context.Context, payload []byte) (steward.CommandResult, func(context.Context)) {
	var cmd steward.Command
	if json.Unmarshal(payload, &cmd) != nil || cmd.ID == "" || (cmd.Name != CommandRotateCredentials && cmd.Name != CommandWipe) {
		return a.handleCommand(payload)
	}
	if cmd.Name == CommandWipe {
		return a.wipe(cmd)
	}
	return a.rotateCredentials(ctx, cmd), nil
}

// rotateCredentials makes a new key, renews the certificate for it with
// simplereenroll (authenticated by the current one), saves both in one
// atomic write, reconnects with them and answers only once the connection
// made with the new certificate is up: the server revokes the old one on
// that answer, so it must be sure the new one is on disk and in use.
func (a *Agent) rotateCredentials(ctx context.Context, cmd steward.Command) steward.CommandResult {
	res := steward.CommandResult{ID: cmd.ID}
	cur := a.identity()
	if cur == nil {
		res.Status, res.Error = steward.CommandError, "no operational identity"
		return res
	}
	old := a.currentConn()
	next, err := a.reenroll(ctx, cur)
	if err != nil {
		a.log.Warn("credential rotation failed", "err", err)
		res.Status, res.Error = steward.CommandError, "re-enrollment failed: "+err.Error()
		return res
	}
	a.setIdentity(next)
	a.renewals.Add(1)
	a.requestReconnect()
	wait, cancel := context.WithTimeout(ctx, rotateReconnectWait)
	defer cancel()
	for {
		c, err := a.waitConn(wait)
		if err != nil {
			res.Status, res.Error = steward.CommandError, "the new certificate is saved, but no connection was made with it in time"
			return res
		}
		if c != old {
			break
		}
		select { // the old connection is being closed by the session loop
		case <-c.lost:
		case <-wait.Done():
		}
	}
	a.log.Info("credentials rotated", "device", next.DeviceID, "serial", next.Cert.SerialNumber.Text(16), "not_after", next.Cert.NotAfter)
	res.Status = steward.CommandOK
	res.Result = map[string]any{
		"serial":          next.Cert.SerialNumber.Text(16),
		"previous_serial": cur.Cert.SerialNumber.Text(16),
		"not_after":       next.Cert.NotAfter.UTC().Format(time.RFC3339),
	}
	return res
}

// wipe erases the agent's key, certificate and state, answers (the live
// connection still holds the key it was made with), and then stops the
// agent: a wiped device must not enroll again on its own.
func (a *Agent) wipe(cmd steward.Command) (steward.CommandResult, func(context.Context)) {
	res := steward.CommandResult{ID: cmd.ID}
	erased := []string{}
	for _, f := range wipedFiles {
		err := os.Remove(a.state.path(f))
		switch {
		case err == nil:
			erased = append(erased, f)
		case !errors.Is(err, fs.ErrNotExist):
			a.log.Error("wipe", "file", f, "err", err)
			res.Status, res.Error = steward.CommandError, fmt.Sprintf("could not erase %s", f)
			return res, nil
		}
	}
	marker := fmt.Sprintf("wiped by command %s at %s\n", cmd.ID, a.cfg.Clock.Now().UTC().Format(time.RFC3339))
	if err := a.state.write(WipedFile, []byte(marker)); err != nil {
		res.Status, res.Error = steward.CommandError, "could not record the wipe"
		return res, nil
	}
	if err := syncDir(string(a.state)); err != nil {
		res.Status, res.Error = steward.CommandError, "could not make the erasure durable"
		return res, nil
	}
	a.wiped.Store(true)
	a.log.Warn("wiped on command: key, certificate and state erased", "files", erased)
	res.Status = steward.CommandOK
	res.Result = map[string]any{"erased": erased}
	return res, func(context.Context) { a.halt() }
}

// checkWiped refuses a state directory that was wiped.
func (a *Agent) checkWiped() error {
	if _, err := os.Stat(a.state.path(WipedFile)); err == nil {
		a.wiped.Store(true)
		return fmt.Errorf("%w (remove %s to provision it again)", ErrWiped, a.state.path(WipedFile))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", WipedFile, err)
	}
	return nil
}

// Wiped reports whether the agent was wiped (and so has stopped).
func (a *Agent) Wiped() bool { return a.wiped.Load() }

// halt ends Run.
func (a *Agent) halt() {
	a.mu.Lock()
	stop := a.stop
	a.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// syncDir makes the removal of a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
