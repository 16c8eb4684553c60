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
		return len(p), nil
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	if !c.truncated {
		c.truncated = true
		if c.onFull != nil {
			go c.onFull()
		}
	}
	return len(p), nil
}

// result returns what was kept and whether anything was dropped.
func (c *cappedBuffer) result() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.truncated
}
