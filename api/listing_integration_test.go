package api_test

// Issue 22's second case: GET /files answers that cost the daemon far more
// than the files they list (control characters the JSON escapes six times
// over, a folder of 300,000 names), asked for twenty at a time.

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

// TestAttackListingsAreBounded: 20 listings at once of nine 1 MiB files of
// control characters, then of a folder of 300,000 hard-link names (a
// listing of them all would be some 20 MB of JSON). Each
// answer is bounded by what the listing's budget writes; past the
// per-client cap the listings get a 429; the daemon's RSS grows by less
// than 64 MiB.
func TestAttackListingsAreBounded(t *testing.T) {
	srv := atkServer(t, nil, nil)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	atkShell(t, srv, id, `for i in 1 2 3 4 5 6 7 8 9; do head -c 1048576 /dev/zero | tr '\0' '\1' > ctrl$i.txt; done`)
	listAll := func(what string) (answered, refused int, largest int64) {
		t.Helper()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				resp, err := http.Get(srv.URL + "/api/playground/files?sessionId=" + id)
				if err != nil {
					t.Errorf("%s: %v", what, err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				defer mu.Unlock()
				switch resp.StatusCode {
				case 200:
					answered++
					largest = max(largest, n)
				case 429:
					refused++
				default:
					t.Errorf("%s: %d", what, resp.StatusCode)
				}
			})
		}
		wg.Wait()
		return answered, refused, largest
	}
	rss := func() int64 { return runtimetest.VmRSS(t) }
	before := rss()
	answered, refused, largest := listAll("control characters")
	during := rss()
	t.Logf("20 listings of 9 MiB of control characters: %d answered (largest %d bytes), %d refused; RSS %d → %d MiB",
		answered, largest, refused, before>>20, during>>20)
	if answered == 0 || largest > 10<<20 {
		t.Errorf("answers: %d, the largest %d bytes: want some, each within the 8 MiB budget and the entries", answered, largest)
	}
	if refused == 0 {
		t.Errorf("20 listings at once from one client: none refused")
	}
	if g := during - before; g > 64<<20 {
		t.Errorf("RSS grew by %d MiB", g>>20)
	}

	// ext4 takes 65,000 links to one file: five files make the 300,000 names.
	atkShell(t, srv, id, `rm -f ctrl*.txt && mkdir many && for i in 0 1 2 3 4; do echo x > many/f$i; done`)
	start := time.Now()
	status, res := atkCall(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "timeoutMs": 120000, "code": `
const fs = require("fs");
for (let i = 0; i < 300000; i++) fs.linkSync("/workspace/many/f" + (i % 5), "/workspace/many/n" + String(i).padStart(6, "0"));
console.log("linked");`})
	if status != 200 || !strings.Contains(fmt.Sprint(res["output"]), "linked") {
		t.Fatalf("make 300,000 names: %d %v", status, res)
	}
	t.Logf("300,000 names made in %v", time.Since(start))
	before = rss()
	answered, refused, largest = listAll("300,000 names")
	during = rss()
	t.Logf("20 listings of a folder of 300,000 names: %d answered (largest %d bytes), %d refused; RSS %d → %d MiB",
		answered, largest, refused, before>>20, during>>20)
	if answered == 0 {
		t.Error("no listing of the folder answered")
	}
	if g := during - before; g > 64<<20 {
		t.Errorf("RSS grew by %d MiB", g>>20)
	}
}
