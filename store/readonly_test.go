package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

func TestListFileWithoutADaemonWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if _, err := ListFile(path); !errdefs.IsNotFound(err) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("ListFile created the database")
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "a"} {
		if err := db.Create(Session{SessionID: id, ContainerID: "c-" + id, State: StateRunning}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	before, _ := os.ReadFile(path)
	list, err := ListFile(path)
	if err != nil || len(list) != 2 || list[0].SessionID != "a" || list[1].ContainerID != "c-b" {
		t.Fatalf("%v %+v", err, list)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the database file changed")
	}
}

func TestListFileRefusesOtherSchemas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bolt.Tx) error {
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(SchemaVersion()+1))
		return tx.Bucket(bucketMeta).Put(keyVersion, buf[:])
	})
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListFile(path); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("newer schema: %v", err)
	}
	if err := os.WriteFile(path, []byte("not a database at all, just some text of some length"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListFile(path); err == nil {
		t.Fatal("listed a file that is not bbolt")
	}
}

// The daemon holds the lock; ListFile copies, and every listing it returns
// is one committed state even while commits land all the time.
func TestListFileWhileTheOwnerWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 200
	ids := map[string]time.Time{}
	for i := range n {
		id := fmt.Sprintf("session-%03d", i)
		if err := db.Create(Session{SessionID: id, State: StateRunning, Workspace: string(bytes.Repeat([]byte("w"), 500))}); err != nil {
			t.Fatal(err)
		}
		ids[id] = time.Time{}
	}
	// One commit sets every session's LastActiveAt to the same instant: a
	// listing of one committed state has a single LastActiveAt.
	var stop atomic.Bool
	var commits atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		at := time.Unix(1_700_000_000, 0).UTC()
		for !stop.Load() {
			at = at.Add(time.Second)
			for id := range ids {
				ids[id] = at
			}
			if err := db.Touch(ids, time.Minute); err != nil {
				t.Error(err)
				return
			}
			commits.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	// Halfway through some copies, let commits land (two are needed before
	// bbolt reuses a page the copied state still uses).
	var copies atomic.Int64
	testHookMidCopy = func() {
		if copies.Add(1)%3 == 1 {
			for start := commits.Load(); commits.Load() < start+3; {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	defer func() { testHookMidCopy = nil }()
	for range 30 {
		list, err := ListFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != n {
			t.Fatalf("%d sessions listed, want %d", len(list), n)
		}
		for _, s := range list {
			if !s.LastActiveAt.Equal(list[0].LastActiveAt) {
				t.Fatalf("torn listing: %s at %v, %s at %v", list[0].SessionID, list[0].LastActiveAt, s.SessionID, s.LastActiveAt)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if commits.Load() < 10 || copies.Load() < 40 {
		t.Fatalf("%d commits and %d copies: the listings did not race the writer", commits.Load(), copies.Load())
	}
}
