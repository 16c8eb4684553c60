package api

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// docBytes writes a size as docs/api.md does: "64 KiB", "8 MiB", "256 bytes".
func docBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// docDuration writes a duration as docs/api.md does: "15 s", "5 min".
func docDuration(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%d s", d/time.Second)
}

func TestDocFormats(t *testing.T) {
	for got, want := range map[string]string{
		docBytes(64 << 10): "64 KiB", docBytes(8 << 20): "8 MiB", docBytes(256): "256 bytes",
		docDuration(15 * time.Second): "15 s", docDuration(5 * time.Minute): "5 min", docDuration(90 * time.Second): "90 s",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// TestFixedLimitsInDocs checks that the limits docs/api.md calls fixed
// are the code's: each phrase is written from the constant the code uses.
func TestFixedLimitsInDocs(t *testing.T) {
	data, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	def := DefaultOptions()
	paths := workspace.DefaultPathLimits
	for _, phrase := range []string{
		fmt.Sprintf("a spec ≤ %d bytes (fixed)", maxSpecLen),
		fmt.Sprintf("JSON nesting %d levels (fixed", def.MaxJSONDepth),
		fmt.Sprintf("≤ %d bytes per name, ≤ %d bytes in all (fixed)", paths.MaxNameLen, paths.MaxPathLen),
		fmt.Sprintf("%s of content per listing", docBytes(workspace.DefaultListLimits.MaxTotalBytes)),
		fmt.Sprintf("response headers ≤ %s and dial ≤ %s (fixed)", docBytes(maxPreviewHeaderBytes), docDuration(runtime.PreviewDialTimeout)),
		fmt.Sprintf("WebSocket messages ≤ %s; cols and rows 1–%d (fixed)", docBytes(maxTerminalMessage), maxTerminalSize),
		fmt.Sprintf("pinged every %s, closed when the pong takes over %s", docDuration(terminalPing), docDuration(terminalPingTimeout)),
		fmt.Sprintf("a `: ping` comment line every %s", docDuration(sseHeartbeat)),
		fmt.Sprintf("a write that waits %s drops the follower", docDuration(sseWriteTimeout)),
		fmt.Sprintf("a client that does not read for %s is dropped", docDuration(sseWriteTimeout)),
		"`" + strings.TrimSuffix(strings.TrimPrefix(sessionIDPattern.String(), "^"), "$") + "`",
		fmt.Sprintf("≤ %d bytes; `X-Request-ID` must match `[A-Za-z0-9._-]{1,%d}`", maxIDLen, maxIDLen),
	} {
		if !strings.Contains(doc, phrase) {
			t.Errorf("docs/api.md does not say %q", phrase)
		}
	}
}
