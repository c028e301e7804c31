package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Sign returns the X-Steward-Signature value of body sent at timestamp
// (Unix seconds, as in X-Steward-Timestamp): "sha256=" and the hex
// HMAC-SHA256, keyed with the secret, of timestamp + "." + body.
func Sign(secret string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature made by Sign, in constant time, and that the
// timestamp is within tolerance of now.
func Verify(secret, signature, timestamp string, body []byte, now time.Time, tolerance time.Duration) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature))
}

// sendWebhook POSTs the delivery's payload. 2xx is delivered; 429, 5xx
// and network errors are worth a retry; any other status is not (the
// receiver refused this request and would refuse it again).
func (nt *Notifier) sendWebhook(ctx context.Context, ch steward.NotificationChannel, d steward.Delivery) outcome {
	wh := ch.Webhook
	if wh == nil {
		return outcome{err: fmt.Errorf("webhook channel %s has no settings", ch.ID)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return outcome{err: fmt.Errorf("webhook request: %w", err)}
	}
	for k, v := range wh.Headers {
		req.Header.Set(k, v)
	}
	now := nt.clock.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Steward-Notify/1")
	req.Header.Set("X-Steward-Delivery", d.ID)
	req.Header.Set("X-Steward-Timestamp", strconv.FormatInt(now, 10))
	if wh.Secret != "" {
		req.Header.Set("X-Steward-Signature", Sign(wh.Secret, now, d.Payload))
	}
	resp, err := nt.cfg.HTTP.Do(req)
	if err != nil {
		return outcome{err: fmt.Errorf("webhook: %w", err), retry: true}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	o := outcome{httpStatus: resp.StatusCode}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return o
	}
	o.err = fmt.Errorf("webhook answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		o.retry = true
		o.retryAfter = retryAfter(resp.Header.Get("Retry-After"), nt.clock.Now())
	}
	return o
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent, unreadable or past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 || s > 1<<31 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
