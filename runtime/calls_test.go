package runtime

import (
	"context"
	"testing"
)

func TestSessionCallsEndCancelsInFlightAndNewCalls(t *testing.T) {
	var c sessionCalls
	bg := context.Background()
	a, releaseA := c.join(bg, "s1")
	other, releaseOther := c.join(bg, "s2")
	done := c.end("s1")
	if a.Err() == nil {
		t.Fatal("a call in flight was not cancelled by its session's end")
	}
	if other.Err() != nil {
		t.Fatal("another session's call was cancelled")
	}
	late, releaseLate := c.join(bg, "s1")
	if late.Err() == nil {
		t.Fatal("a call that joined while its session was ending was not cancelled")
	}
	releaseA()
	releaseLate()
	done()
	after, releaseAfter := c.join(bg, "s1")
	if after.Err() != nil {
		t.Fatal("a call after the end was done is cancelled")
	}
	releaseAfter()
	releaseOther()
	if n := len(c.m); n != 0 {
		t.Fatalf("%d sessions still tracked with nothing in flight", n)
	}
}
