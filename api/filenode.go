package api

import (
	"encoding/base64"
	"strings"

	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// Node types and encodings the frontend sends.
const (
	nodeFile      = "file"
	nodeFolder    = "folder"
	encodingB64   = "base64"
	npmFolderName = "node_modules"
)

// SyncLimits bound one /sync request. Zero fields take the value in
// DefaultOptions.
type SyncLimits struct {
	MaxFiles      int   // files plus folders
	MaxFileBytes  int64 // one file, decoded
	MaxTotalBytes int64 // all files, decoded
	Path          workspace.PathLimits
	// ListFileBytes is /files' --list-file-bytes: a file over it, like a
	// binary one, was listed without content, so a text entry of "" for it
	// keeps it (the client never had its content to empty). 0: no such rule.
	ListFileBytes int64
}

func (l SyncLimits) withDefaults() SyncLimits {
	d := DefaultOptions().SyncLimits
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.Path == (workspace.PathLimits{}) {
		l.Path = d.Path
	}
	return l
}

// flattenTree turns the frontend's tree into workspace entries, parents
// before children, paths joined by "/". Every problem is an
// errdefs.ErrInvalidArgument naming the path: a bad name (empty, ".", "..",
// holding "/", or anything workspace.CleanPath refuses), node_modules
// anywhere (npm's, not the editor's), an unknown type or encoding, bad
// base64, a file with children, a path given twice, or a limit passed. A
// file whose content was withheld becomes a Keep entry: the workspace
// keeps what it has there. So, at sync time, does a file sent as empty
// text whose workspace file the listing gives without content (see
// workspace.Entry.KeepIfWithheld): the ServCraft page rebuilds every file as
// {content: file.content || ”}, which turns a listed binary file into "".
func flattenTree(nodes []FileNode, lim SyncLimits) ([]workspace.Entry, error) {
	f := flattener{lim: lim.withDefaults(), seen: make(map[string]bool)}
	if err := f.walk(nodes, ""); err != nil {
		return nil, err
	}
	return f.out, nil
}

type flattener struct {
	lim   SyncLimits
	seen  map[string]bool
	total int64
	out   []workspace.Entry
}

func (f *flattener) walk(nodes []FileNode, parent string) error {
	for i := range nodes {
		n := &nodes[i]
		p := n.Name
		if parent != "" {
			p = parent + "/" + n.Name
		}
		switch {
		case n.Name == "":
			return invalid("file %q: empty name", p)
		case n.Name == "." || n.Name == "..":
			return invalid("file %q: name %q", p, n.Name)
		case strings.Contains(n.Name, "/"):
			return invalid("file %q: name %q holds a \"/\"", p, n.Name)
		case n.Name == npmFolderName:
			return invalid("file %q: node_modules is npm's: install packages instead", p)
		}
		if _, err := workspace.CleanPath(p, f.lim.Path); err != nil {
			return err
		}
		if f.seen[p] {
			return invalid("file %q: given twice", p)
		}
		f.seen[p] = true
		if len(f.out) >= f.lim.MaxFiles {
			return invalid("file %q: more than %d files and folders", p, f.lim.MaxFiles)
		}
		switch n.Type {
		case nodeFolder:
			f.out = append(f.out, workspace.Entry{Path: p, Dir: true})
			if err := f.walk(n.Children, p); err != nil {
				return err
			}
		case nodeFile:
			if len(n.Children) > 0 {
				return invalid("file %q: a file has no children", p)
			}
			if n.Encoding != "" && n.Encoding != encodingB64 {
				return invalid("file %q: encoding %q: want \"\" or \"base64\"", p, n.Encoding)
			}
			if withheld(n) {
				f.out = append(f.out, workspace.Entry{Path: p, Keep: true})
				continue
			}
			data, err := decodeContent(p, n)
			if err != nil {
				return err
			}
			if int64(len(data)) > f.lim.MaxFileBytes {
				return invalid("file %q: %d bytes, over %d", p, len(data), f.lim.MaxFileBytes)
			}
			f.total += int64(len(data))
			if f.total > f.lim.MaxTotalBytes {
				return invalid("file %q: files over %d bytes in all", p, f.lim.MaxTotalBytes)
			}
			e := workspace.Entry{Path: p, Data: data}
			if n.Encoding == "" && len(data) == 0 {
				e.KeepIfWithheld = f.lim.ListFileBytes // emptying such a file takes base64 ""
			}
			f.out = append(f.out, e)
		default:
			return invalid("file %q: type %q: want \"file\" or \"folder\"", p, n.Type)
		}
	}
	return nil
}

// withheld reports whether a file node carries no content to write: none
// at all, or an empty one on a node marked binary or truncated (a listing's
// entry echoed back). The workspace keeps what it has for such a file.
func withheld(n *FileNode) bool {
	return n.Content == nil || *n.Content == "" && (n.Binary || n.Truncated)
}

// decodeContent decodes the content of a node whose encoding is known good.
func decodeContent(p string, n *FileNode) ([]byte, error) {
	if n.Encoding != encodingB64 {
		return []byte(*n.Content), nil
	}
	data, err := base64.StdEncoding.DecodeString(*n.Content)
	if err != nil {
		return nil, invalid("file %q: bad base64 content: %v", p, err)
	}
	return data, nil
}
