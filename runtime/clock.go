package runtime

import (
	"sync/atomic"
	"time"
)

// clock is what every deadline of the runtime is read from; tests move it.
type clock struct {
	now atomic.Pointer[func() time.Time]
}

func newClock() *clock {
	c := &clock{}
	c.set(time.Now)
	return c
}

// read is the clock's time.
func (c *clock) read() time.Time { return (*c.now.Load())() }

// set makes now the clock's time source.
func (c *clock) set(now func() time.Time) { c.now.Store(&now) }
