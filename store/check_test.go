package store

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// filledDB writes a database of many records to a temporary file, closes it
// and returns its path and page size.
func filledDB(t *testing.T) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "servcraftd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = db.db.Update(func(tx *bolt.Tx) error {
		for i := range 300 {
			s := Session{SessionID: "s-" + strings.Repeat("x", i%40) + time.Duration(i).String(), UUID: strings.Repeat("u", 36),
				State: StateRunning, Workspace: strings.Repeat("/w", 50), CreatedAt: time.Now()}
			if err := putSession(tx.Bucket(bucketSessions), s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := readMeta(mustOpen(t, path), 0)
	if err != nil {
		t.Fatal(err)
	}
	return path, int64(m.pageSize)
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// rewriteMetas applies fn to both meta pages and fixes their checksums.
func rewriteMetas(t *testing.T, path string, pageSize int64, fn func(meta []byte)) {
	f := mustOpen(t, path)
	for _, off := range []int64{0, pageSize} {
		b := make([]byte, metaLen)
		if _, err := f.ReadAt(b, off+boltPageHeader); err != nil {
			t.Fatal(err)
		}
		fn(b)
		h := fnv.New64a()
		h.Write(b[:metaOffChecksum])
		binary.NativeEndian.PutUint64(b[metaOffChecksum:], h.Sum64())
		if _, err := f.WriteAt(b, off+boltPageHeader); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDamagedFilesAreRefused damages a database file in the ways a crash, a
// full disk or a stray write do, and checks that Open, Check and ListFile
// each refuse it with a clear error of the right class, and nothing crashes
// (a crash would end the test binary).
func TestDamagedFilesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, pageSize int64)
		cause  error
		says   string
	}{
		{"zero-length", func(t *testing.T, path string, _ int64) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, ErrDamaged, "empty"},
		{"truncated to half", func(t *testing.T, path string, _ int64) {
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, ErrDamaged, "truncated"},
		{"truncated inside the meta pages", func(t *testing.T, path string, _ int64) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}, ErrDamaged, "truncated"},
		{"garbage meta pages", func(t *testing.T, path string, pageSize int64) {
			garbage(t, path, 0, 2*pageSize)
		}, ErrDamaged, "no valid meta page"},
		{"garbage data pages", func(t *testing.T, path string, pageSize int64) {
			st, _ := os.Stat(path)
			garbage(t, path, 2*pageSize, st.Size()-2*pageSize)
		}, ErrDamaged, "damaged"},
		{"garbage root page", func(t *testing.T, path string, pageSize int64) {
			m := newestMeta(t, path, pageSize)
			garbage(t, path, int64(m.root)*pageSize, pageSize)
		}, ErrDamaged, "damaged"},
		{"garbage freelist page", func(t *testing.T, path string, pageSize int64) {
			m := newestMeta(t, path, pageSize)
			garbage(t, path, int64(m.freelist)*pageSize, pageSize)
		}, ErrDamaged, "freelist page"},
		{"freelist of another page type", func(t *testing.T, path string, pageSize int64) {
			rewriteFreelist(t, path, pageSize, func(head []byte) {
				binary.NativeEndian.PutUint16(head[pageOffFlags:], 0x02) // a leaf page
			})
		}, ErrDamaged, "page type 0x2"},
		{"freelist with a huge element count", func(t *testing.T, path string, pageSize int64) {
			rewriteFreelist(t, path, pageSize, func(head []byte) {
				binary.NativeEndian.PutUint16(head[pageOffCount:], freelistCountOverflow)
				binary.NativeEndian.PutUint64(head[boltPageHeader:], 1<<40)
			})
		}, ErrDamaged, "lists 1099511627776 pages"},
		{"freelist spanning past the end", func(t *testing.T, path string, pageSize int64) {
			rewriteFreelist(t, path, pageSize, func(head []byte) {
				binary.NativeEndian.PutUint32(head[pageOffOverflow:], 1000)
			})
		}, ErrDamaged, "spans 1001 pages"},
		{"freelist listing a page past the end", func(t *testing.T, path string, pageSize int64) {
			rewriteFreelist(t, path, pageSize, func(head []byte) {
				binary.NativeEndian.PutUint16(head[pageOffCount:], 1)
				binary.NativeEndian.PutUint64(head[boltPageHeader:], 1<<40)
			})
		}, ErrDamaged, "lists page 1099511627776"},
		{"freelist listing a meta page", func(t *testing.T, path string, pageSize int64) {
			rewriteFreelist(t, path, pageSize, func(head []byte) {
				binary.NativeEndian.PutUint16(head[pageOffCount:], 1)
				binary.NativeEndian.PutUint64(head[boltPageHeader:], 1)
			})
		}, ErrDamaged, "lists page 1,"},
		{"page ids past the end", func(t *testing.T, path string, pageSize int64) {
			rewriteMetas(t, path, pageSize, func(b []byte) {
				binary.NativeEndian.PutUint64(b[metaOffRoot:], 1<<40)
			})
		}, ErrDamaged, "root page"},
		{"wrong bbolt format version", func(t *testing.T, path string, pageSize int64) {
			rewriteMetas(t, path, pageSize, func(b []byte) {
				binary.NativeEndian.PutUint32(b[metaOffVersion:], 7)
			})
		}, ErrDamaged, "format version 7"},
		{"wrong schema version", func(t *testing.T, path string, _ int64) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], 99)
				return tx.Bucket(bucketMeta).Put(keyVersion, v[:])
			}); err != nil {
				t.Fatal(err)
			}
		}, ErrNewerSchema, "schema 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, pageSize := filledDB(t)
			tc.damage(t, path, pageSize)
			err := Check(path)
			if !errors.Is(err, tc.cause) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Check: %v; want %v saying %q", err, tc.cause, tc.says)
			}
			t.Logf("Check: %v", err)
			if db, err := Open(path); !errors.Is(err, tc.cause) {
				if db != nil {
					db.Close()
				}
				t.Fatalf("Open: %v; want %v", err, tc.cause)
			}
			if _, err := ListFile(path); err == nil {
				t.Fatal("ListFile read a damaged file without an error")
			} else if !errors.Is(err, ErrDamaged) && !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("ListFile: %v; want ErrDamaged or a failed precondition", err)
			}
		})
	}
}

// newestMeta returns the valid meta page with the higher transaction id:
// the one bbolt uses.
func newestMeta(t *testing.T, path string, pageSize int64) meta {
	t.Helper()
	m, err := readMeta(mustOpen(t, path), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m1, err := readMeta(mustOpen(t, path), pageSize); err == nil && m1.txID > m.txID {
		m = m1
	}
	if m.freelist == noFreelist {
		t.Fatal("the test database has no freelist page")
	}
	return m
}

// rewriteFreelist applies fn to the header and first 8-byte word of the
// newest meta page's freelist page.
func rewriteFreelist(t *testing.T, path string, pageSize int64, fn func(head []byte)) {
	t.Helper()
	off := int64(newestMeta(t, path, pageSize).freelist) * pageSize
	f := mustOpen(t, path)
	head := make([]byte, boltPageHeader+8)
	if _, err := f.ReadAt(head, off); err != nil {
		t.Fatal(err)
	}
	fn(head)
	if _, err := f.WriteAt(head, off); err != nil {
		t.Fatal(err)
	}
}

func garbage(t *testing.T, path string, off, n int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(off), uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if _, err := mustOpen(t, path).WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestCheckPassesHealthyFiles: a fresh, a filled and a missing file pass.
func TestCheckPassesHealthyFiles(t *testing.T) {
	path, _ := filledDB(t)
	if err := Check(path); err != nil {
		t.Fatal(err)
	}
	if err := Check(filepath.Join(t.TempDir(), "none.db")); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	db, err := Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := Check(fresh); err != nil {
		t.Fatal(err)
	}
}
