package runtime

import (
	"bytes"
	"sync"
)

// cappedBuffer keeps the first limit bytes written to it and discards the
// rest, calling onFull once when the limit is crossed. Writes never fail, so
// the process's pipe keeps draining while it is being killed.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	limit     int
	truncated bool
	onFull    func()
	tee       func([]byte) // sees what is kept, as it is written
}

func newCappedBuffer(limit int, onFull func()) *cappedBuffer {
	return &cappedBuffer{limit: limit, onFull: onFull}
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - c.buf.Len()
	if len(p) <= room {
		c.buf.Write(p)
		c.emit(p)
		return len(p), nil
	}
	if room > 0 {
		c.buf.Write(p[:room])
		c.emit(p[:room])
	}
	if !c.truncated {
		c.truncated = true
		if c.onFull != nil {
			go c.onFull()
		}
	}
	return len(p), nil
}

// setTee sets who also sees the output from now on.
func (c *cappedBuffer) setTee(fn func([]byte)) {
	c.mu.Lock()
	c.tee = fn
	c.mu.Unlock()
}

func (c *cappedBuffer) emit(p []byte) {
	if c.tee != nil {
		c.tee(append([]byte(nil), p...))
	}
}

// result returns what was kept and whether anything was dropped.
func (c *cappedBuffer) result() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.truncated
}

// ringBuffer keeps the last size bytes written to it.
type ringBuffer struct {
	buf     []byte
	size    int
	dropped bool
}

func newRingBuffer(size int) *ringBuffer { return &ringBuffer{size: size} }

func (r *ringBuffer) Write(p []byte) {
	r.buf = append(r.buf, p...)
	if over := len(r.buf) - r.size; over > 0 {
		r.buf = append(r.buf[:0], r.buf[over:]...)
		r.dropped = true
	}
}

// Bytes returns a copy of what is kept and whether older bytes were dropped.
func (r *ringBuffer) Bytes() ([]byte, bool) {
	return append([]byte(nil), r.buf...), r.dropped
}
