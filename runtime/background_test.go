package runtime

import (
	"testing"
	"time"
)

// writeReturns reports whether b.Write(p) returns within wait.
func writeReturns(b *background, p []byte, wait time.Duration) (returned <-chan struct{}, ok bool) {
	done := make(chan struct{})
	go func() { _, _ = b.Write(p); close(done) }()
	select {
	case <-done:
		return done, true
	case <-time.After(wait):
		return done, false
	}
}

// TestBackgroundOutputPausesWhenNobodyReads: a full buffer nobody read and
// nobody follows stops the reading of output; a read, a follower or the
// process ending resumes it.
func TestBackgroundOutputPausesWhenNobodyReads(t *testing.T) {
	const size = 1024
	chunk := make([]byte, size/4)
	b := newBackground(Process{ID: "bg-test", Running: true}, size)
	for range 4 {
		if _, ok := writeReturns(b, chunk, time.Second); !ok {
			t.Fatal("a write blocked before the buffer was full")
		}
	}
	pending, ok := writeReturns(b, chunk, 50*time.Millisecond)
	if ok {
		t.Fatal("a write past a full, unread buffer did not block")
	}
	b.mu.Lock()
	b.read() // what Logs does
	b.mu.Unlock()
	select {
	case <-pending:
	case <-time.After(5 * time.Second):
		t.Fatal("a read did not resume the output")
	}
	for range 3 {
		if _, ok := writeReturns(b, chunk, time.Second); !ok {
			t.Fatal("a write blocked within a buffer's worth after a read")
		}
	}
	pending, ok = writeReturns(b, chunk, 50*time.Millisecond)
	if ok {
		t.Fatal("the output did not pause again after another full buffer")
	}
	// A follower keeps everything flowing.
	follower := make(chan []byte, 64)
	b.mu.Lock()
	b.subs[follower] = struct{}{}
	b.resume.Broadcast()
	b.mu.Unlock()
	select {
	case <-pending:
	case <-time.After(5 * time.Second):
		t.Fatal("a follower did not resume the output")
	}
	b.mu.Lock()
	delete(b.subs, follower)
	b.mu.Unlock()
	pending, ok = writeReturns(b, chunk, 50*time.Millisecond)
	if ok {
		t.Fatal("the output did not pause once the follower left")
	}
	b.release()
	select {
	case <-pending:
	case <-time.After(5 * time.Second):
		t.Fatal("release did not resume the output")
	}
	if _, ok := writeReturns(b, make([]byte, 10*size), time.Second); !ok {
		t.Fatal("a released process's output blocked")
	}
}
