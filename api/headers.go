package api

import "net/http"

// SecurityHeaders sets the management plane's security headers on every
// answer of next, whatever serves it (the API, its problems, /metrics):
//
//   - X-Content-Type-Options: nosniff, so that no browser reads a JSON or
//     text answer as HTML or script;
//   - X-Frame-Options: DENY and Content-Security-Policy: default-src 'none';
//     frame-ancestors 'none', so that an answer shown in a browser can load
//     nothing and be framed by nothing;
//   - Referrer-Policy: no-referrer;
//   - Cache-Control: no-store, so that no proxy or browser cache keeps an
//     answer (most carry tenant data);
//   - Strict-Transport-Security, only on a request that came over TLS to
//     this very server (r.TLS). The management plane serves plain HTTP and
//     trusts no forwarding header, so behind a TLS-terminating proxy it is
//     the proxy's to set (docs/security.md).
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w, r)
		next.ServeHTTP(w, r)
	})
}

// hstsValue is one year; no includeSubDomains or preload, which would bind
// names this server does not own.
const hstsValue = "max-age=31536000"

func setSecurityHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", hstsValue)
	}
}
