package store

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestCreateGetDeleteErrors(t *testing.T) {
	db := openTemp(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := Session{SessionID: "s-1", UUID: "u", ContainerID: "c", State: StateCreating, CreatedAt: now}
	if err := db.Create(s); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		do    func() error
		cause error
	}{
		{"create twice", func() error { return db.Create(s) }, errdefs.ErrAlreadyExists},
		{"get unknown", func() error { _, err := db.Get("nope"); return err }, errdefs.ErrNotFound},
		{"update unknown", func() error { _, err := db.Update("nope", func(*Session) error { return nil }); return err }, errdefs.ErrNotFound},
		{"delete unknown", func() error { return db.Delete("nope") }, errdefs.ErrNotFound},
		{"get known", func() error { _, err := db.Get("s-1"); return err }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if tc.cause == nil && err != nil || tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Fatalf("err = %v, want %v", err, tc.cause)
			}
		})
	}
	got, err := db.Get("s-1")
	if err != nil || got.UUID != "u" || !got.CreatedAt.Equal(now) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := db.Delete("s-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get("s-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestUpdateAbortsOnError(t *testing.T) {
	db := openTemp(t)
	if err := db.Create(Session{SessionID: "a", State: StateCreating}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := db.Update("a", func(s *Session) error { s.State = StateRunning; return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if s, _ := db.Get("a"); s.State != StateCreating {
		t.Fatalf("aborted update was written: %s", s.State)
	}
	s, err := db.Update("a", func(s *Session) error { s.State = StateRunning; s.SessionID = "renamed"; return nil })
	if err != nil || s.State != StateRunning || s.SessionID != "a" {
		t.Fatalf("update: %+v %v", s, err)
	}
}

func TestTouchNeverMovesBackwards(t *testing.T) {
	db := openTemp(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	idle := 30 * time.Minute
	if err := db.Create(Session{SessionID: "a", LastActiveAt: t0, ExpiresAt: t0.Add(idle + 10*time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := db.Touch(map[string]time.Time{"a": t0.Add(-time.Minute), "gone": t0}, idle); err != nil {
		t.Fatal(err)
	}
	s, _ := db.Get("a")
	if !s.LastActiveAt.Equal(t0) {
		t.Fatalf("lastActive moved back: %v", s.LastActiveAt)
	}
	// An extended deadline beyond the idle window is kept.
	if err := db.Touch(map[string]time.Time{"a": t0.Add(time.Minute)}, idle); err != nil {
		t.Fatal(err)
	}
	s, _ = db.Get("a")
	if !s.LastActiveAt.Equal(t0.Add(time.Minute)) || !s.ExpiresAt.Equal(t0.Add(idle+10*time.Minute)) {
		t.Fatalf("touch: %+v", s)
	}
	if err := db.Touch(map[string]time.Time{"a": t0.Add(20 * time.Minute)}, idle); err != nil {
		t.Fatal(err)
	}
	s, _ = db.Get("a")
	if !s.ExpiresAt.Equal(t0.Add(50 * time.Minute)) {
		t.Fatalf("expiresAt = %v", s.ExpiresAt)
	}
}

func TestListSortedAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "a", "c"} {
		if err := db.Create(Session{SessionID: id}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := db.List()
	if err != nil || len(list) != 3 || list[0].SessionID != "a" || list[2].SessionID != "c" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	// Count counts what List lists, without decoding the records.
	if n, err := db.Count(); err != nil || n != 3 {
		t.Fatalf("count = %d, %v; want 3", n, err)
	}
	if err := db.Delete("b"); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Count(); err != nil || n != 2 {
		t.Fatalf("count after a delete = %d, %v; want 2", n, err)
	}
}

// TestMigration1 starts from an empty file (version 0) and checks migration 1's result.
func TestMigration1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	raw, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSessions) == nil {
			t.Error("sessions bucket missing")
		}
		v, err := readVersion(tx)
		if v != 1 {
			t.Errorf("version = %d", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	raw, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(bucketMeta)
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(SchemaVersion()+1))
		return b.Put(keyVersion, buf[:])
	})
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if db, err := Open(path); err == nil {
		db.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func TestRename(t *testing.T) {
	db := openTemp(t)
	for _, id := range []string{"~pool-1", "taken"} {
		if err := db.Create(Session{SessionID: id, UUID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Rename("~pool-1", func(s *Session) error { s.SessionID = "taken"; return nil }); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("rename onto a taken id: %v", err)
	}
	if _, err := db.Get("~pool-1"); err != nil {
		t.Fatalf("failed rename lost the record: %v", err)
	}
	s, err := db.Rename("~pool-1", func(s *Session) error { s.SessionID = "mine"; s.ProjectType = "ts"; return nil })
	if err != nil || s.SessionID != "mine" || s.UUID != "~pool-1" {
		t.Fatalf("rename: %+v %v", s, err)
	}
	if _, err := db.Get("~pool-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("old id still there: %v", err)
	}
	if _, err := db.Rename("nope", func(*Session) error { return nil }); !errdefs.IsNotFound(err) {
		t.Fatalf("rename unknown: %v", err)
	}
}
