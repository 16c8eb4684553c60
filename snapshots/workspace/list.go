package workspace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

// The two kinds of FileInfo.Type.
const (
	TypeFile   = "file"
	TypeFolder = "folder"
)

// FileInfo is one entry of a workspace listing, in the shape the frontend's
// flat file list reads.
type FileInfo struct {
	Name     string
	Type     string // TypeFile or TypeFolder; links, FIFOs, sockets and devices are files
	Path     string // relative to the workspace root, no leading "/"
	Content  string
	Language string
	Size     int64
	// Truncated on a file: its content was left out (Content is empty, never
	// a part) because the file is over ListLimits.MaxFileBytes, the listing's
	// MaxTotalBytes was used up, or it grew while read. On a folder: its
	// contents are not all listed, because of MaxDepth or MaxEntries, or
	// because it changed while listed.
	Truncated bool
	Binary    bool // a NUL byte in the first 8 KiB, or not UTF-8: no content
	// HasContent on a file: Content is the whole file (an empty file
	// included). False for what was not read: binary, truncated, a link, a
	// FIFO, a socket, a device, a file that could not be opened or changed
	// under the listing; a client that writes the listing back must leave
	// those alone rather than write an empty Content over them.
	HasContent bool
}

// ListLimits bound a listing. Zero fields take the value in DefaultListLimits.
type ListLimits struct {
	MaxDepth      int   // levels below the listed folder; 1 lists only its own entries
	MaxEntries    int   // files plus folders
	MaxFileBytes  int64 // largest file whose content is returned
	MaxTotalBytes int64 // bytes a listing reads of files, a returned content counted as JSON writes it (escapes included)
	Path          PathLimits
}

// DefaultListLimits are the frontend's: depth 4, at most 2000 entries.
var DefaultListLimits = ListLimits{
	MaxDepth:      4,
	MaxEntries:    2000,
	MaxFileBytes:  1 << 20,
	MaxTotalBytes: 8 << 20,
	Path:          DefaultPathLimits,
}

func (l ListLimits) withDefaults() ListLimits {
	d := DefaultListLimits
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.Path == (PathLimits{}) {
		l.Path = d.Path
	}
	return l
}

// binarySniff is how much of a file is searched for a NUL byte.
const binarySniff = 8 << 10

// List returns what the workspace folder dir holds under sub ("" for all of
// it), ordered by path as a tree reads ("a", "a/b", "a-b").
//
// If sub names a folder, its contents are listed (not the folder itself),
// breadth first, down to lim.MaxDepth levels below it, and at most
// lim.MaxEntries of them; if sub names anything else, List returns that one
// entry. Below sub, hidden names (dot-files, dot-folders, node_modules) are
// skipped; sub itself may point into them, so the explorer can open what npm
// made. A list cut short by MaxEntries has exactly MaxEntries entries, and
// the folders whose contents were cut are marked Truncated.
//
// Only regular files are ever opened, and only through os.Root with
// O_NOFOLLOW|O_NONBLOCK, checked after opening to be the very file that was
// Lstat'ed: links (to files or folders, inside or out), FIFOs, sockets and
// devices are listed as files without content, never followed or read. sub
// is resolved one name at a time without following links: a link on the way
// is errdefs.ErrInvalidArgument, a missing name errdefs.ErrNotFound.
func List(dir, sub string, lim ListLimits) ([]FileInfo, error) {
	lim = lim.withDefaults()
	if sub != "" {
		var err error
		if sub, err = CleanPath(sub, lim.Path); err != nil {
			return nil, err
		}
	}
	ws, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open workspace: %w", err)
	}
	defer ws.Close()
	l := &lister{ws: ws, lim: lim, budget: lim.MaxTotalBytes}

	var startFi fs.FileInfo
	if sub != "" {
		parent, fi, err := lstatNoFollow(ws, sub)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			info := l.describe(parent, path.Base(sub), sub, fi)
			parent.Close()
			return []FileInfo{info}, nil
		}
		parent.Close()
		startFi = fi
	}
	if err := l.walk(sub, startFi); err != nil {
		return nil, err
	}
	slices.SortFunc(l.out, func(a, b FileInfo) int { return comparePaths(a.Path, b.Path) })
	return l.out, nil
}

type lister struct {
	ws     *os.Root
	lim    ListLimits
	budget int64 // file bytes still to read
	out    []FileInfo
}

// walk lists the folder start (identity startFi; nil for the workspace root)
// breadth first, so a cut by MaxEntries keeps the upper levels whole.
func (l *lister) walk(start string, startFi fs.FileInfo) error {
	type folder struct {
		rel   string
		fi    fs.FileInfo
		idx   int // index in l.out; -1 for start
		depth int // levels below start
	}
	queue := []folder{{start, startFi, -1, 0}}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		d, err := openDir(l.ws, f.rel, f.fi)
		var names []string
		more := false
		if err == nil {
			names, more, err = readNamesUpTo(d, l.lim.MaxEntries-len(l.out)+1, scanFactor*l.lim.MaxEntries)
			if err != nil {
				d.Close()
				err = fmt.Errorf("read folder %q: %w", f.rel, classify(err))
			}
		}
		if err != nil {
			if f.idx < 0 {
				return err
			}
			l.out[f.idx].Truncated = true // changed or vanished under us: list it, not its contents
			continue
		}
		for _, name := range names {
			if Hidden(name) {
				continue
			}
			if len(l.out) >= l.lim.MaxEntries {
				if f.idx >= 0 {
					l.out[f.idx].Truncated = true
				}
				for _, q := range queue {
					l.out[q.idx].Truncated = true
				}
				d.Close()
				return nil
			}
			fi, err := d.Lstat(name)
			if err != nil {
				continue // gone since the folder was read
			}
			rel := joinRel(f.rel, name)
			if !fi.IsDir() {
				l.out = append(l.out, l.describe(d, name, rel, fi))
				continue
			}
			l.out = append(l.out, FileInfo{Name: name, Type: TypeFolder, Path: rel})
			if f.depth+1 < l.lim.MaxDepth {
				queue = append(queue, folder{rel, fi, len(l.out) - 1, f.depth + 1})
			} else {
				l.out[len(l.out)-1].Truncated = true
			}
		}
		if more && f.idx >= 0 {
			l.out[f.idx].Truncated = true // names past what a listing reads
		}
		d.Close()
	}
	return nil
}

// describe lists the non-folder name in d (at rel in the workspace), whose
// Lstat is fi, reading its content if it is a regular text file within the
// limits.
func (l *lister) describe(d *os.Root, name, rel string, fi fs.FileInfo) FileInfo {
	info := FileInfo{Name: name, Type: TypeFile, Path: rel, Language: Language(name), Size: fi.Size()}
	if !fi.Mode().IsRegular() {
		return info // links, FIFOs, sockets, devices: never opened
	}
	if fi.Size() == 0 {
		info.HasContent = true
		return info
	}
	limit := min(l.lim.MaxFileBytes, l.budget)
	if fi.Size() > limit {
		info.Truncated = true
		return info
	}
	f, err := d.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return info
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || !os.SameFile(st, fi) {
		return info // swapped since the Lstat: not the file we listed
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	info.Size = st.Size()
	// What a file costs the listing is what it reads of it, or, for content
	// the answer carries, what the answer writes: a byte JSON escapes
	// counts for its escape (a control character six times).
	switch {
	case err != nil:
		l.budget -= int64(len(data))
	case int64(len(data)) > limit:
		l.budget -= int64(len(data))
		info.Truncated = true
	case isBinary(data):
		l.budget -= int64(len(data))
		info.Binary = true
	default:
		cost := JSONStringLen(data)
		if cost > l.budget {
			l.budget -= int64(len(data))
			info.Truncated = true
			return info
		}
		l.budget -= cost
		info.Content, info.HasContent = string(data), true
	}
	return info
}

// JSONStringLen is how many bytes encoding/json writes for data (valid
// UTF-8) inside a string, HTML escaping on as json.Marshal has it: control
// characters, <, > and & take six (\u00XX), \n, \r, \t, \b, \f, " and \\
// two, U+2028 and U+2029 six for three.
func JSONStringLen(data []byte) int64 {
	n := int64(0)
	for i := 0; i < len(data); i++ {
		switch b := data[i]; {
		case b == '"' || b == '\\' || b == '\n' || b == '\r' || b == '\t' || b == '\b' || b == '\f':
			n += 2
		case b < 0x20 || b == '<' || b == '>' || b == '&':
			n += 6
		case b == 0xe2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xa8 || data[i+2] == 0xa9):
			n += 6
			i += 2
		default:
			n++
		}
	}
	return n
}

// scanFactor bounds the names a listing reads of one folder: this many
// times MaxEntries (hidden names are read and skipped).
const scanFactor = 4

// readNamesUpTo reads at most most names of the folder d, fewer once want
// of them are visible (not Hidden), and sorts them; more reports that the
// folder holds names it did not read. A folder of 300,000 names costs a
// listing what its first few thousand do.
func readNamesUpTo(d *os.Root, want, most int) (names []string, more bool, err error) {
	f, err := d.Open(".")
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	visible := 0
	for len(names) < most && visible < want {
		batch, err := f.Readdirnames(min(256, most-len(names)))
		for _, n := range batch {
			if !Hidden(n) {
				visible++
			}
		}
		names = append(names, batch...)
		if errors.Is(err, io.EOF) || (err == nil && len(batch) == 0) {
			slices.Sort(names)
			return names, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	// Stopped at a bound: is there anything left?
	rest, err := f.Readdirnames(1)
	more = len(rest) > 0
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	slices.Sort(names)
	return names, more, nil
}

func isBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), binarySniff)], 0) >= 0 || !utf8.Valid(data)
}

// lstatNoFollow resolves rel inside ws one name at a time, following no
// link, and returns the folder holding its last name (to be closed by the
// caller) and that name's Lstat.
func lstatNoFollow(ws *os.Root, rel string) (*os.Root, fs.FileInfo, error) {
	cur, err := openDir(ws, "", nil)
	if err != nil {
		return nil, nil, err
	}
	elems := strings.Split(rel, "/")
	for i, name := range elems {
		so := strings.Join(elems[:i+1], "/")
		fi, err := cur.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = fmt.Errorf("path %q: %w", so, errdefs.ErrNotFound)
		case err != nil:
			err = fmt.Errorf("path %q: %w", so, classify(err))
		case i == len(elems)-1:
			return cur, fi, nil
		case fi.Mode()&fs.ModeSymlink != 0:
			err = fmt.Errorf("path %q: a link, not followed: %w", so, errdefs.ErrInvalidArgument)
		case !fi.IsDir():
			err = fmt.Errorf("path %q: not a folder: %w", so, errdefs.ErrNotFound)
		}
		if err != nil {
			cur.Close()
			return nil, nil, err
		}
		next, err := openDir(cur, name, fi)
		cur.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("path %q: %w", so, err)
		}
		cur = next
	}
	panic("unreachable")
}

// Language names the editor language of a file from its name's ending.
func Language(name string) string {
	switch strings.ToLower(strings.TrimPrefix(path.Ext(name), ".")) {
	case "ts", "tsx", "mts", "cts":
		return "typescript"
	case "js", "mjs", "cjs", "jsx":
		return "javascript"
	case "json":
		return "json"
	case "md":
		return "markdown"
	case "css":
		return "css"
	case "html":
		return "html"
	case "yml", "yaml":
		return "yaml"
	case "sh":
		return "shell"
	}
	return "plaintext"
}
