package workspace

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// PathLimits bound the names a client may give inside a workspace.
type PathLimits struct {
	MaxDepth   int // folders plus the file, e.g. "src/app.ts" is 2
	MaxNameLen int // bytes in one path element
	MaxPathLen int // bytes in the whole relative path
}

// DefaultPathLimits are used where no limits are configured.
var DefaultPathLimits = PathLimits{MaxDepth: 16, MaxNameLen: 255, MaxPathLen: 1024}

// CleanPath checks a client's relative path and returns it unchanged, or an
// errdefs.ErrInvalidArgument naming what is wrong. It accepts only plain
// relative paths: no leading "/", no "." or ".." elements, no empty elements,
// no backslash, NUL or other control characters.
func CleanPath(p string, lim PathLimits) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("path %q: %s: %w", p, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case p == "":
		return bad("empty")
	case len(p) > lim.MaxPathLen:
		return bad(fmt.Sprintf("longer than %d bytes", lim.MaxPathLen))
	case strings.HasPrefix(p, "/"):
		return bad("absolute")
	case strings.ContainsRune(p, '\\'):
		return bad("backslash")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return bad("control or invalid character")
		}
	}
	elems := strings.Split(p, "/")
	if len(elems) > lim.MaxDepth {
		return bad(fmt.Sprintf("deeper than %d levels", lim.MaxDepth))
	}
	for _, e := range elems {
		switch {
		case e == "":
			return bad("empty element")
		case e == "." || e == "..":
			return bad("dot element")
		case len(e) > lim.MaxNameLen:
			return bad(fmt.Sprintf("element longer than %d bytes", lim.MaxNameLen))
		}
	}
	return p, nil
}

// WriteFile writes data to rel (already checked by CleanPath) inside the
// workspace folder dir, making parent folders as needed, and returns once
// it is on the volume's disk. Every step is resolved inside dir by os.Root,
// so no link planted by user code leads out of it. The data goes to a new
// file that then replaces rel in one rename: a failed write (a full
// workspace) leaves the old file intact, and a link or FIFO swapped in
// meanwhile is replaced, never written through. Only regular files are
// replaced; whatever is created is owned by Owner.
func WriteFile(dir, rel string, data []byte, perm fs.FileMode) error {
	flush, err := WriteFileUnflushed(dir, rel, data, perm)
	if err != nil {
		return err
	}
	return flush()
}

// WriteFileUnflushed writes as WriteFile does and returns the flush that
// puts the write on the volume's disk, to be called once, which the caller
// may overlap with other work (a run of the file): the write is
// acknowledged only when the flush has returned nil.
func WriteFileUnflushed(dir, rel string, data []byte, perm fs.FileMode) (flush func() error, err error) {
	fl, err := openFlusher(dir)
	if err != nil {
		return nil, err
	}
	if err := quotaBound(func() error { return writeFile(dir, rel, data, perm) }); err != nil {
		fl.close()
		return nil, err
	}
	return fl.flush, nil
}

// flusher holds the workspace's filesystem open from before a change until
// it is flushed, so the flush reports every write-back error in between.
type flusher struct{ f *os.File }

func openFlusher(dir string) (flusher, error) {
	f, err := os.Open(dir)
	if err != nil {
		return flusher{}, fmt.Errorf("open workspace: %w", err)
	}
	return flusher{f}, nil
}

// flush writes what the filesystem holds in memory to its disk (syncfs:
// one flush however many files changed), and reports whether all of it
// got there since the flusher was opened.
func (fl flusher) flush() error {
	defer fl.close()
	if err := unix.Syncfs(int(fl.f.Fd())); err != nil {
		return fmt.Errorf("flush workspace to disk: %w", classify(err))
	}
	return nil
}

func (fl flusher) close() { _ = fl.f.Close() }

// writeFile is WriteFile without the flush.
func writeFile(dir, rel string, data []byte, perm fs.FileMode) (retErr error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	defer root.Close()
	parent := path.Dir(rel)
	if parent != "." {
		if err := mkdirAllOwned(root, parent); err != nil {
			return err
		}
	}
	if st, err := root.Lstat(rel); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%q is a %s, not a regular file: %w", rel, typeName(st.Mode()), errdefs.ErrInvalidArgument)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %q: %w", rel, classify(err))
	}
	tmp := path.Join(parent, writePrefix+randomSuffix())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("create %q: the folder changed while writing: %w", rel, errdefs.ErrConflict)
	} else if err != nil {
		return fmt.Errorf("create %q: %w", rel, classify(err))
	}
	defer func() {
		if retErr != nil {
			_ = root.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chown(Owner, Owner)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", rel, classify(err))
	}
	if err := root.Rename(tmp, rel); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Code in the session moved the folder away while we wrote.
			return fmt.Errorf("replace %q: the folder changed while writing: %w", rel, errdefs.ErrConflict)
		}
		return fmt.Errorf("replace %q: %w", rel, classify(err))
	}
	return nil
}

// writePrefix starts the name of the file a write fills before renaming it
// into place; 16 hex digits follow.
const writePrefix = ".servcraft-write-"

// isWriteLeftover reports whether name is one of writeFile's new files.
func isWriteLeftover(name string) bool {
	suffix, ok := strings.CutPrefix(name, writePrefix)
	if !ok || len(suffix) != 16 {
		return false
	}
	_, err := hex.DecodeString(suffix)
	return err == nil
}

// RemoveWriteLeftovers deletes from the workspace folder dir the new files
// of writes that never finished (the daemon was killed between creating one
// and renaming it into place), and returns how many. It walks through an
// os.Root handle and follows no link; only regular files with writeFile's
// names go. Call it while no write runs in dir.
func RemoveWriteLeftovers(dir string) (int, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("open workspace: %w", err)
	}
	defer root.Close()
	removed := 0
	var errs []error
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isWriteLeftover(d.Name()) {
			return nil
		}
		if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %q: %w", p, err))
			return nil
		}
		removed++
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return "device"
	}
	return "special file"
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mkdirAllOwned makes every missing folder of rel inside root, owned by Owner.
func mkdirAllOwned(root *os.Root, rel string) error {
	elems := strings.Split(rel, "/")
	for i := range elems {
		p := strings.Join(elems[:i+1], "/")
		err := root.Mkdir(p, 0o755)
		if errors.Is(err, fs.ErrExist) {
			st, serr := root.Stat(p)
			if errors.Is(serr, fs.ErrNotExist) { // there a moment ago: something in the session swaps it
				return fmt.Errorf("mkdir %q: the folder changed while writing: %w", p, errdefs.ErrConflict)
			}
			if serr != nil {
				return fmt.Errorf("stat %q in workspace: %w", p, classify(serr))
			}
			if !st.IsDir() {
				return fmt.Errorf("%q is not a folder: %w", p, errdefs.ErrInvalidArgument)
			}
			continue
		}
		if errors.Is(err, fs.ErrNotExist) { // a parent made or checked a moment ago is gone
			return fmt.Errorf("mkdir %q: the folder changed while writing: %w", p, errdefs.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("mkdir %q in workspace: %w", p, classify(err))
		}
		if err := root.Lchown(p, Owner, Owner); errors.Is(err, fs.ErrNotExist) {
			// made a moment ago and gone (or swapped): something in the session
			return fmt.Errorf("chown %q: the folder changed while writing: %w", p, errdefs.ErrConflict)
		} else if err != nil {
			return fmt.Errorf("chown %q: %w", p, classify(err))
		}
	}
	return nil
}

// ErrFull is the cause of a write that found the workspace's quota used up.
var ErrFull = errors.New("workspace full")

// classify marks errors caused by what is in the workspace (a link leading
// out, a full disk, a name that is a folder) as the client's, keeping the
// cause but dropping the host path a *PathError would show the client.
func classify(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case escapesRoot(err):
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w: %w", ErrFull, errdefs.ErrResourceExhausted, err)
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTDIR),
		errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.EEXIST), escapesRoot(err):
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return err
}

// escapesRoot reports os.Root's own refusal: a *PathError whose cause is not
// an errno is the root saying the path (through a link) leads out of it.
func escapesRoot(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	var errno syscall.Errno
	switch {
	case errors.As(err, &pe):
		return !errors.As(pe.Err, &errno)
	case errors.As(err, &le): // a rename
		return !errors.As(le.Err, &errno)
	}
	return false
}
