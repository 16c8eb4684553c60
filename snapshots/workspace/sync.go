package workspace

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
)

// Entry is one file or folder that Sync puts in the workspace. Path is
// relative to the workspace root, elements joined by "/", and should have
// passed CleanPath; Data is a file's content (ignored for folders). Keep
// marks a file whose content the client does not have (it was listed
// without): whatever stands at Path is left as it is, and nothing is made
// where nothing is.
//
// KeepIfWithheld above 0 marks a file entry of empty text from a client that
// may never have been given the file's content (a listing leaves it out of
// files over its MaxFileBytes, binary files and what is not a regular file;
// a client that echoes such a file back as "" has not emptied it): if what
// stands at Path is any of those, with KeepIfWithheld as the size bound, it
// is kept as a Keep entry would be; otherwise the file is emptied.
type Entry struct {
	Path           string
	Dir            bool
	Data           []byte
	Keep           bool
	KeepIfWithheld int64
}

// withheld reports whether the file at rel is one a listing with
// MaxFileBytes of maxBytes gives without content: not a regular file,
// over maxBytes, or binary. A missing file is not.
func withheld(root *os.Root, rel string, maxBytes int64) (bool, error) {
	fi, err := root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("stat %s: %w", rel, err)
	case fi.IsDir():
		return false, nil // a folder where a file should be: the entry's kind decides
	case !fi.Mode().IsRegular():
		return true, nil
	case fi.Size() > maxBytes:
		return true, nil
	case fi.Size() == 0:
		return false, nil
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return true, nil // a file the listing could not read: it gave no content
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil || int64(len(data)) > maxBytes {
		return true, nil
	}
	return isBinary(data), nil
}

// SyncResult says what a Sync did.
type SyncResult struct {
	Written int   // files written plus folders created
	Deleted int   // removals: a removed folder counts once, with all it held
	Bytes   int64 // file bytes written
	Kept    int   // Keep entries, left as they were
}

// syncPathLimits only catch malformed entries: the caller applies the
// configured limits before Sync.
var syncPathLimits = PathLimits{MaxDepth: 1024, MaxNameLen: 255, MaxPathLen: 1 << 16}

// Sync writes entries into the workspace folder dir: folders are made,
// files are written or overwritten (each by WriteFile: a new file renamed
// over the old), all owned by Owner. Parents are handled before their
// children whatever the order of entries; of two entries with the same path
// the last wins. Without replace, a link, FIFO or folder where an entry
// wants a file (or a file where it wants a folder) is an
// errdefs.ErrInvalidArgument.
//
// A Keep entry writes nothing, clears nothing and, with replace, keeps
// whatever stands at its path from being removed.
//
// With replace, Sync also makes the workspace match entries:
//   - an entry whose path holds something of another kind (a folder where a
//     file should be, a link, a FIFO) has it removed first;
//   - once everything is written (so a replace that overfills the quota
//     fails before it deletes anything), whatever the workspace holds that
//     is not in entries (nor a parent of one) is removed, except hidden
//     names: names starting with "." and folders named node_modules, at any
//     level, with everything inside them. The frontend never sees those
//     (List skips them), so it cannot be expected to send them.
//
// Sync never follows a link out of dir, and deletion follows no link at all:
// removing a link removes the link, never its target. Folders are walked
// through os.Root handles, and one that is swapped for something else while
// Sync walks it is left alone. On a failure Sync stops writing and returns
// what it did so far together with the error; a failure to delete one name
// does not stop the deletion of others. Sync returns success only once what
// it wrote is on the volume's disk.
func Sync(dir string, entries []Entry, replace bool) (SyncResult, error) {
	var res SyncResult
	for _, e := range entries {
		if _, err := CleanPath(e.Path, syncPathLimits); err != nil {
			return res, err
		}
	}
	fl, err := openFlusher(dir)
	if err != nil {
		return res, err
	}
	err = quotaBound(func() (err error) {
		res, err = syncEntries(dir, entries, replace)
		return err
	})
	if err != nil {
		fl.close()
		return res, err
	}
	return res, fl.flush()
}

// syncEntries is Sync without the checks and the flush.
func syncEntries(dir string, entries []Entry, replace bool) (SyncResult, error) {
	var res SyncResult
	root, err := os.OpenRoot(dir)
	if err != nil {
		return res, fmt.Errorf("open workspace: %w", err)
	}
	defer root.Close()

	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b Entry) int { return comparePaths(a.Path, b.Path) })
	for i, e := range sorted {
		if i+1 < len(sorted) && sorted[i+1].Path == e.Path {
			continue // a later entry for the same path wins
		}
		if !e.Keep && !e.Dir && e.KeepIfWithheld > 0 && len(e.Data) == 0 {
			if e.Keep, err = withheld(root, e.Path, e.KeepIfWithheld); err != nil {
				return res, err
			}
			sorted[i].Keep = e.Keep // and so replace keeps it too
		}
		if e.Keep {
			res.Kept++
			continue
		}
		if replace {
			removed, err := clearOtherKind(root, e)
			res.Deleted += removed
			if err != nil {
				return res, err
			}
		}
		if e.Dir {
			fi, err := root.Lstat(e.Path)
			created := err != nil || !fi.IsDir()
			if err := mkdirAllOwned(root, e.Path); err != nil {
				return res, err
			}
			if created {
				res.Written++
			}
			continue
		}
		if err := writeFile(dir, e.Path, e.Data, 0o644); err != nil {
			return res, err
		}
		res.Written++
		res.Bytes += int64(len(e.Data))
	}
	if !replace {
		return res, nil
	}

	keep := make(map[string]bool, len(sorted)) // path -> is a folder
	for _, e := range sorted {
		if !keep[e.Path] {
			keep[e.Path] = e.Dir
		}
		for p := path.Dir(e.Path); p != "."; p = path.Dir(p) {
			keep[p] = true
		}
	}
	return res, prune(root, "", nil, keep, &res)
}

// clearOtherKind removes what stands at e.Path if it is not what e wants
// there: a regular file for a file, a real folder (not a link to one) for a
// folder. Hidden paths are never cleared; writing to them then fails instead.
func clearOtherKind(root *os.Root, e Entry) (int, error) {
	fi, err := root.Lstat(e.Path)
	if err != nil {
		return 0, nil // missing, or a parent is wrong: the write says what is wrong
	}
	if e.Dir && fi.IsDir() || !e.Dir && fi.Mode().IsRegular() {
		return 0, nil
	}
	for _, name := range strings.Split(e.Path, "/") {
		if Hidden(name) {
			return 0, nil
		}
	}
	if err := root.RemoveAll(e.Path); err != nil {
		return 0, fmt.Errorf("replace %s %q: %w", fi.Mode().Type(), e.Path, classify(err))
	}
	return 1, nil
}

// prune removes from the folder rel (whose identity is want; nil for the
// workspace root) every name not in keep, then does the same in the kept
// folders below it. It opens each folder as its own os.Root and removes
// single names relative to it, so no path is resolved twice through a link.
func prune(ws *os.Root, rel string, want fs.FileInfo, keep map[string]bool, res *SyncResult) error {
	d, err := openDir(ws, rel, want)
	if want != nil && (errdefs.IsInvalidArgument(err) || errors.Is(err, fs.ErrNotExist)) {
		return nil // swapped (for a link, a file, another folder) or removed by the user's own code: leave it
	}
	if err != nil {
		return err
	}
	names, err := readNames(d)
	if err != nil {
		d.Close()
		return fmt.Errorf("read folder %q: %w", rel, classify(err))
	}
	type folder struct {
		rel string
		fi  fs.FileInfo
	}
	var (
		errs []error
		subs []folder
	)
	for _, name := range names {
		if Hidden(name) {
			continue
		}
		p := joinRel(rel, name)
		isDir, ok := keep[p]
		if !ok {
			if err := d.RemoveAll(name); errors.Is(err, syscall.ENOTEMPTY) {
				// A process of the session made a file in it meanwhile.
				errs = append(errs, fmt.Errorf("remove %q: the folder changed while removing it: %w", p, errdefs.ErrConflict))
				continue
			} else if err != nil {
				errs = append(errs, fmt.Errorf("remove %q: %w", p, classify(err)))
				continue
			}
			res.Deleted++
			continue
		}
		if !isDir {
			continue
		}
		fi, err := d.Lstat(name)
		if err != nil || !fi.IsDir() {
			continue // changed since it was written: leave it
		}
		subs = append(subs, folder{p, fi})
	}
	d.Close()
	for _, s := range subs {
		if err := prune(ws, s.rel, s.fi, keep, res); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errChanged is the cause when a folder is no longer the one seen a moment before.
var errChanged = errors.New("changed while in use")

// openDir opens the folder rel of ws as a root of its own and checks that it
// is the folder want describes (when want is not nil): a name swapped for a
// link or another folder in between is refused with errChanged, wrapped in
// errdefs.ErrInvalidArgument.
func openDir(ws *os.Root, rel string, want fs.FileInfo) (*os.Root, error) {
	if rel == "" {
		rel = "."
	}
	d, err := ws.OpenRoot(rel)
	if err != nil {
		return nil, fmt.Errorf("open folder %q: %w", rel, classify(err))
	}
	if want == nil {
		return d, nil
	}
	st, err := d.Stat(".")
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("stat folder %q: %w", rel, classify(err))
	}
	if !os.SameFile(st, want) {
		d.Close()
		return nil, fmt.Errorf("folder %q: %w: %w", rel, errChanged, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// readNames returns the names in the folder d, sorted.
func readNames(d *os.Root) ([]string, error) {
	names, _, err := readNamesUpTo(d, math.MaxInt, math.MaxInt)
	return names, err
}

// Hidden reports whether a name is one the frontend never sees, and a
// replacing Sync never deletes: dot-files, dot-folders and node_modules.
func Hidden(name string) bool {
	return strings.HasPrefix(name, ".") || name == "node_modules"
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// comparePaths orders relative paths as a tree is read: a folder, then what
// is inside it, then its next sibling ("a", "a/b", "a-b").
func comparePaths(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		switch {
		case ca == cb:
			continue
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		}
		return cmp.Compare(ca, cb)
	}
	return cmp.Compare(len(a), len(b))
}
