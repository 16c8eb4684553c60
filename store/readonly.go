package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ListFile returns every record of the database file at path, ordered by
// sessionId, without writing to it: for `servcraftd sessions ls`, also while
// the daemon runs.
//
// A running daemon holds the file's bbolt lock exclusively (flock LOCK_EX),
// which a read-only open (LOCK_SH) cannot share. Then the file is copied and
// the copy is read, but only if no transaction committed while it was
// copied: every commit rewrites one of the two meta pages at the start of the
// file, and bbolt overwrites pages the last commit still uses only after
// another commit, so identical meta pages before and after the copy mean the
// copy holds that last commit whole. Otherwise the copy is made again.
func ListFile(path string) ([]Session, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("session database %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("session database: %w", err)
	}
	list, err := listReadOnly(path)
	if !errors.Is(err, berrors.ErrTimeout) {
		return list, err
	}
	for range copyAttempts {
		list, err := listCopy(path)
		if !errors.Is(err, errCommittedMeanwhile) {
			return list, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("session database %s: written to all the time, no quiet moment to copy it: %w", path, errdefs.ErrUnavailable)
}

// lockWait is how long a read-only open waits for the lock: this short, bbolt
// gives up after its first try, and the copy is made at once.
const lockWait = time.Nanosecond

// copyAttempts bounds the copies of a database that keeps changing.
const copyAttempts = 50

var errCommittedMeanwhile = errors.New("a transaction committed during the copy")

// testHookMidCopy, when set by a test, runs halfway through a copy.
var testHookMidCopy func()

// listReadOnly checks path's layout, then opens it read-only and lists it
// on a guarded goroutine (see guarded): a damaged file is an error wrapping
// ErrDamaged, never a crash. berrors.ErrTimeout when another process holds
// the file's lock.
func listReadOnly(path string) ([]Session, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	if err := checkLayout(path, st.Size()); err != nil {
		return nil, fmt.Errorf("session database %s: %w", path, err)
	}
	var list []Session
	err = guarded(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockWait})
		if errors.Is(err, berrors.ErrTimeout) {
			return err
		} else if err != nil {
			return fmt.Errorf("open store %s read-only: %w: %v", path, ErrDamaged, err)
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			if err := walk(path, tx); err != nil {
				return err
			}
			if v, _ := readVersion(tx); v != SchemaVersion() {
				return fmt.Errorf("store %s: database schema %d, this build reads %d: %w", path, v, SchemaVersion(), errdefs.ErrFailedPrecondition)
			}
			b, err := sessionsBucket(tx)
			if err != nil {
				return err
			}
			list, err = listBucket(b)
			return err
		})
	})
	return list, err
}

// listCopy lists a copy of path taken while no transaction committed.
func listCopy(path string) ([]Session, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp("", "servcraftd-sessions-*.db")
	if err != nil {
		return nil, fmt.Errorf("copy session database: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	half := st.Size() / 2
	_, err = io.CopyN(tmp, src, half)
	if testHookMidCopy != nil {
		testHookMidCopy()
	}
	if err == nil {
		_, err = io.Copy(tmp, src)
	}
	if err != nil {
		return nil, fmt.Errorf("copy session database: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("copy session database: %w", err)
	}
	copied, err := metaPages(tmp.Name())
	if err != nil {
		return nil, err
	}
	now, err := metaPages(path)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(copied, now) {
		return nil, errCommittedMeanwhile
	}
	return listReadOnly(tmp.Name())
}

// bbolt's file layout: pages of pageSize bytes; pages 0 and 1 are the meta
// pages, each a 16-byte page header then the meta, which starts with the
// magic number, the format version and the page size (native byte order).
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
)

// metaPages returns the two meta pages of the bbolt file at path.
func metaPages(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	defer f.Close()
	head := make([]byte, boltPageHeader+12)
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("session database %s: too short for bbolt: %w", path, err)
	}
	if binary.NativeEndian.Uint32(head[boltPageHeader:]) != boltMagic {
		return nil, fmt.Errorf("session database %s: not a bbolt file", path)
	}
	pageSize := int64(binary.NativeEndian.Uint32(head[boltPageHeader+8:]))
	if pageSize < 512 || pageSize > 1<<20 {
		return nil, fmt.Errorf("session database %s: page size %d", path, pageSize)
	}
	pages := make([]byte, 2*pageSize)
	if _, err := f.ReadAt(pages, 0); err != nil {
		return nil, fmt.Errorf("session database %s: read meta pages: %w", path, err)
	}
	return pages, nil
}
