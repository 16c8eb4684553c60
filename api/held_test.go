package api

import (
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func ginContextFrom(remote string) *gin.Context {
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest("GET", "/", nil)
	c.Request.RemoteAddr = remote
	return c
}

func TestHeldConnsCapPerClientAndPerSession(t *testing.T) {
	var limited []string
	h := newHeldConns(Options{MaxHeldPerClient: 2, MaxHeldPerSession: 3}, func(l string) { limited = append(limited, l) })
	a, b := "192.0.2.1:1000", "192.0.2.2:1000"
	var releases []func()
	take := func(remote, session string) error {
		c := ginContextFrom(remote)
		release, err := h.hold(c, session)
		if err == nil {
			releases = append(releases, release)
			return nil
		}
		if c.Writer.Header().Get("Retry-After") == "" || c.Writer.Header().Get("Connection") != "close" {
			t.Errorf("a refusal without Retry-After and Connection: close: %v", c.Writer.Header())
		}
		return err
	}
	for i, tc := range []struct {
		remote, session string
		refusal         string // "": held
	}{
		{a, "s1", ""},
		{a, "s2", ""},
		{a, "s3", "held_client"}, // a holds 2
		{b, "s1", ""},
		{"192.0.2.3:1", "s1", ""},
		{"192.0.2.4:1", "s1", "held_session"}, // s1 holds 3
	} {
		before := len(limited)
		err := take(tc.remote, tc.session)
		if (tc.refusal != "") != (err != nil) {
			t.Fatalf("step %d (%s → %s): err %v, want refusal %q", i, tc.remote, tc.session, err, tc.refusal)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, errRateLimited) {
			t.Fatalf("step %d: %v is not a rate limit", i, err)
		}
		if len(limited) != before+1 || limited[before] != tc.refusal {
			t.Fatalf("step %d: refusals counted as %v, want %s last", i, limited, tc.refusal)
		}
	}
	for _, r := range releases {
		r()
	}
	if len(h.perClient.n) != 0 || len(h.perSession.n) != 0 {
		t.Fatalf("released, yet counted: clients %v sessions %v", h.perClient.n, h.perSession.n)
	}
	if err := take(a, "s3"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestIdleWatchClosesOnlySilentExchanges(t *testing.T) {
	const idle = 200 * time.Millisecond
	// A silent exchange: the read fails once nothing moved for idle.
	w := newIdleWatch(idle)
	server, client := net.Pipe()
	defer client.Close()
	watched := w.conn(server)
	start := time.Now()
	_, err := watched.Read(make([]byte, 1))
	if !os.IsTimeout(err) || time.Since(start) < idle/2 {
		t.Fatalf("silent read: %v after %v, want a timeout after about %v", err, time.Since(start), idle)
	}

	// A live one: bytes moving on another connection of the same exchange
	// keep this one's read alive past idle.
	w = newIdleWatch(idle)
	s1, c1 := net.Pipe()
	s2, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	reader, other := w.conn(s1), w.conn(s2)
	go func() {
		buf := make([]byte, 1)
		for range 8 {
			time.Sleep(idle / 4)
			go func() { _, _ = c2.Read(buf) }()
			_, _ = other.Write([]byte("x"))
		}
		_, _ = c1.Write([]byte("y"))
	}()
	start = time.Now()
	n, err := reader.Read(make([]byte, 1))
	if err != nil || n != 1 || time.Since(start) < idle {
		t.Fatalf("read on a live exchange: %d %v after %v, want its byte after more than %v", n, err, time.Since(start), idle)
	}
}
