package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged is the cause of a database file that cannot be trusted: empty,
// truncated, with no valid meta page, of another bbolt format version, or
// with pages that do not read back. `servcraftd store rebuild` replaces it.
var ErrDamaged = errors.New("session database damaged")

// ErrNewerSchema is the cause of a database written by a newer build.
var ErrNewerSchema = errors.New("session database written by a newer servcraftd")

// bbolt's meta page (after the 16-byte page header), native byte order:
// magic, format version, page size, flags (4 bytes each), the root bucket
// (root page id, sequence), the freelist page id, the high-water page id,
// the transaction id, then an FNV-64a checksum of everything before it.
const (
	metaOffVersion  = 4
	metaOffPageSize = 8
	metaOffRoot     = 16
	metaOffFreelist = 32
	metaOffHighMark = 40
	metaOffTxID     = 48
	metaOffChecksum = 56
	metaLen         = 64
	boltVersion     = 2
	noFreelist      = 0xffffffffffffffff
	// fallbackPageSize is where the second meta page is looked for when
	// the first one cannot say its page size.
	fallbackPageSize = 4096
)

// meta is what Check reads of one meta page.
type meta struct {
	pageSize, version        uint32
	root, freelist, highMark uint64
	txID                     uint64
}

// Check inspects the database file at path before anything maps it, and
// returns an error wrapping ErrDamaged when it cannot be trusted: an empty
// or truncated file, meta pages that are missing, of another format version
// or failing their checksum, page ids past the end, a freelist page that is
// not one or lists pages the file does not have, or pages that do not
// read back (every bucket and record is walked; a Go panic or a memory fault
// while bbolt reads them is caught, never a crash). A missing file is fine:
// Open creates it. ErrNewerSchema when a newer build wrote it.
func Check(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("session database: %w", err)
	}
	if err := checkLayout(path, st.Size()); err != nil {
		return fmt.Errorf("session database %s: %w", path, err)
	}
	return guarded(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("session database %s is locked by another process (a running servcraftd?)", path)
		} else if err != nil {
			return fmt.Errorf("session database %s: %w: %v", path, ErrDamaged, err)
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error { return walk(path, tx) })
	})
}

// checkLayout checks the file's size, meta pages and freelist, reading
// them with plain reads: the newest valid meta page must describe a file no
// longer than the one there is, and its freelist must read back (see
// checkFreelist).
func checkLayout(path string, size int64) error {
	if size == 0 {
		return fmt.Errorf("%w: the file is empty (zero bytes)", ErrDamaged)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m0, err0 := readMeta(f, 0)
	pageSize := int64(fallbackPageSize)
	if err0 == nil {
		pageSize = int64(m0.pageSize)
	}
	m1, err1 := readMeta(f, pageSize)
	var best *meta
	switch {
	case err0 == nil && err1 == nil:
		best = &m0
		if m1.txID > m0.txID {
			best = &m1
		}
	case err0 == nil:
		best = &m0
	case err1 == nil:
		best = &m1
	default:
		return fmt.Errorf("%w: no valid meta page (first: %v; second: %v)", ErrDamaged, err0, err1)
	}
	ps := uint64(best.pageSize)
	if need := best.highMark * ps; uint64(size) < need {
		return fmt.Errorf("%w: truncated: the file holds %d bytes, its last commit needs %d", ErrDamaged, size, need)
	}
	if best.root < 2 || best.root >= best.highMark {
		return fmt.Errorf("%w: root page %d outside the file's %d pages", ErrDamaged, best.root, best.highMark)
	}
	if best.freelist == noFreelist {
		return nil
	}
	if best.freelist < 2 || best.freelist >= best.highMark {
		return fmt.Errorf("%w: freelist page %d outside the file's %d pages", ErrDamaged, best.freelist, best.highMark)
	}
	return checkFreelist(f, best)
}

// bbolt's page header: page id (8 bytes), flags (2), element count (2),
// overflow page count (4). A freelist page holds its free page ids (8 bytes
// each) after the header; a count of freelistCountOverflow means the real
// count is the first of those 8-byte words and the ids follow it.
const (
	pageOffFlags          = 8
	pageOffCount          = 10
	pageOffOverflow       = 12
	freelistPageFlag      = 0x10
	freelistCountOverflow = 0xFFFF
)

// checkFreelist reads m's freelist page with plain reads, as bbolt reads it
// on every read-write open (outside any guard: a bad page type is a panic
// there, and a huge element count an allocation the runtime cannot survive).
// The page must be a freelist page whose ids fit in its pages, every id a
// data page of the file, each listed once.
func checkFreelist(r io.ReaderAt, m *meta) error {
	ps := int64(m.pageSize)
	off := int64(m.freelist) * ps
	head := make([]byte, boltPageHeader+8)
	if _, err := r.ReadAt(head, off); err != nil {
		return fmt.Errorf("%w: read freelist page %d: %v", ErrDamaged, m.freelist, err)
	}
	ne := binary.NativeEndian
	if id := ne.Uint64(head); id != m.freelist {
		return fmt.Errorf("%w: freelist page %d says it is page %d", ErrDamaged, m.freelist, id)
	}
	if flags := ne.Uint16(head[pageOffFlags:]); flags != freelistPageFlag {
		return fmt.Errorf("%w: freelist page %d has page type %#x, not a freelist's", ErrDamaged, m.freelist, flags)
	}
	overflow := uint64(ne.Uint32(head[pageOffOverflow:]))
	if m.freelist+overflow >= m.highMark {
		return fmt.Errorf("%w: freelist page %d spans %d pages, past the file's %d", ErrDamaged, m.freelist, overflow+1, m.highMark)
	}
	skip, count := uint64(0), uint64(ne.Uint16(head[pageOffCount:]))
	if count == freelistCountOverflow {
		skip, count = 1, ne.Uint64(head[boltPageHeader:])
	}
	room := ((overflow+1)*uint64(ps) - boltPageHeader) / 8
	if count > room || skip+count > room {
		return fmt.Errorf("%w: freelist page %d lists %d pages, its %d pages hold at most %d", ErrDamaged, m.freelist, count, overflow+1, room-skip)
	}
	ids := make([]byte, 8*count)
	if _, err := r.ReadAt(ids, off+boltPageHeader+int64(8*skip)); err != nil {
		return fmt.Errorf("%w: read freelist page %d: %v", ErrDamaged, m.freelist, err)
	}
	seen := make(map[uint64]bool, count)
	for i := range count {
		id := ne.Uint64(ids[8*i:])
		if id < 2 || id >= m.highMark {
			return fmt.Errorf("%w: freelist page %d lists page %d, outside the file's data pages 2..%d", ErrDamaged, m.freelist, id, m.highMark-1)
		}
		if seen[id] {
			return fmt.Errorf("%w: freelist page %d lists page %d twice", ErrDamaged, m.freelist, id)
		}
		seen[id] = true
	}
	return nil
}

// readMeta reads and validates the meta page at offset off.
func readMeta(r io.ReaderAt, off int64) (meta, error) {
	buf := make([]byte, boltPageHeader+metaLen)
	if _, err := r.ReadAt(buf, off); err != nil {
		return meta{}, fmt.Errorf("read at %d: %w", off, err)
	}
	b := buf[boltPageHeader:]
	ne := binary.NativeEndian
	if ne.Uint32(b) != boltMagic {
		return meta{}, errors.New("not a bbolt meta page")
	}
	m := meta{
		version:  ne.Uint32(b[metaOffVersion:]),
		pageSize: ne.Uint32(b[metaOffPageSize:]),
		root:     ne.Uint64(b[metaOffRoot:]),
		freelist: ne.Uint64(b[metaOffFreelist:]),
		highMark: ne.Uint64(b[metaOffHighMark:]),
		txID:     ne.Uint64(b[metaOffTxID:]),
	}
	h := fnv.New64a()
	h.Write(b[:metaOffChecksum])
	if h.Sum64() != ne.Uint64(b[metaOffChecksum:]) {
		return meta{}, errors.New("checksum mismatch")
	}
	if m.version != boltVersion {
		return meta{}, fmt.Errorf("bbolt format version %d, this build reads %d", m.version, boltVersion)
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return meta{}, fmt.Errorf("page size %d", m.pageSize)
	}
	return m, nil
}

// walk reads every bucket, key and value of tx, decodes every session
// record and checks the schema version.
func walk(path string, tx *bolt.Tx) error {
	var visit func(b *bolt.Bucket, depth int) error
	visit = func(b *bolt.Bucket, depth int) error {
		if depth > 4 {
			return fmt.Errorf("%w: buckets nested %d deep", ErrDamaged, depth)
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				child := b.Bucket(k)
				if child == nil {
					return fmt.Errorf("%w: key %q is neither a value nor a bucket", ErrDamaged, k)
				}
				return visit(child, depth+1)
			}
			return nil
		})
	}
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error { return visit(b, 1) })
	if err != nil {
		return fmt.Errorf("session database %s: %w", path, err)
	}
	if tx.Bucket(bucketMeta) == nil {
		return nil // created, not yet migrated: Open migrates it
	}
	v, err := readVersion(tx)
	if err != nil {
		return fmt.Errorf("session database %s: %w: %v", path, ErrDamaged, err)
	}
	if v > SchemaVersion() {
		return fmt.Errorf("session database %s: schema %d, this build knows up to %d: %w: %w", path, v, SchemaVersion(), ErrNewerSchema, errdefs.ErrFailedPrecondition)
	}
	if v == 0 {
		return nil // created, not yet migrated: Open migrates it
	}
	b, err := sessionsBucket(tx)
	if err != nil {
		return fmt.Errorf("session database %s: %w: %v", path, ErrDamaged, err)
	}
	if _, err := listBucket(b); err != nil {
		return fmt.Errorf("session database %s: %w: %v", path, ErrDamaged, err)
	}
	return nil
}

// guarded runs fn, which reads the file at path through bbolt, on a
// goroutine of its own where a memory fault (SIGBUS or SIGSEGV on a
// mapping of a damaged file) is a panic rather than a crash, and turns any
// panic into an error wrapping ErrDamaged.
func guarded(path string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("session database %s: %w: reading it failed: %v", path, ErrDamaged, r)
			}
		}()
		done <- fn()
	}()
	return <-done
}
