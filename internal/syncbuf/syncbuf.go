// Package syncbuf has a bytes.Buffer that is safe for concurrent use, for
// tests that read what servers, loggers or a command write from other
// goroutines.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes from many goroutines. The zero value is ready to
// use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
