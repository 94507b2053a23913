// Package logbuf is a log sink for tests: a buffer that the goroutines of
// a server under test may write to at once while the test reads it.
package logbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent writes and reads.
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

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail returns the last lines written, up to about n bytes.
func (s *Buffer) Tail(n int) string { return Tail(s.String(), n) }

// Tail returns the last lines of text, up to about n bytes: it cuts at
// the first line break within the last n bytes.
func Tail(text string, n int) string {
	if i := len(text) - n; i > 0 {
		if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
			i += j + 1
		}
		text = text[i:]
	}
	return text
}
