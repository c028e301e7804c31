package api

import "github.com/steward-iot/steward"

// Route is one route the API serves: its method, its path pattern (with
// {name} wildcards, as net/http writes them) and the permission it needs
// (empty for a public route).
type Route struct {
	Method     string
	Path       string
	Permission steward.Permission
}

// Routes lists every route the server serves, in the order registered, so
// that tests can walk all of them (the hostile tenant suite does).
func (s *Server) Routes() []Route {
	out := make([]Route, len(s.routes))
	for i, r := range s.routes {
		out[i] = Route{Method: r.method, Path: r.path, Permission: r.perm}
	}
	return out
}
