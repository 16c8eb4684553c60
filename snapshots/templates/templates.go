// Package templates holds the starter projects a new session's workspace is
// seeded with, one folder per project type, kept as real files, and seeds a
// workspace with one.
package templates

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"sort"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/snapshots/workspace"
)

//go:embed all:files
var files embed.FS

// File is one file of a starter project.
type File struct {
	Path string // relative, "/"-separated
	Data []byte
}

// Types lists the project types that have a starter project.
func Types() []string {
	entries, _ := fs.ReadDir(files, "files")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Files returns the starter project of projectType, in path order.
func Files(projectType string) ([]File, error) {
	if !slices.Contains(Types(), projectType) {
		return nil, fmt.Errorf("project type %q: %w", projectType, errdefs.ErrNotFound)
	}
	root, err := fs.Sub(files, "files/"+projectType)
	if err != nil {
		return nil, fmt.Errorf("read template %s: %w", projectType, err)
	}
	var out []File
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(root, p)
		out = append(out, File{Path: p, Data: data})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read template %s: %w", projectType, err)
	}
	return out, nil
}

// Seed writes the starter project of projectType into the workspace folder
// dir and flushes it to the volume's disk. An unknown project type is errdefs.ErrInvalidArgument (and ErrNotFound).
func Seed(dir, projectType string) error {
	files, err := Files(projectType)
	if err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	entries := make([]workspace.Entry, len(files))
	for i, f := range files {
		entries[i] = workspace.Entry{Path: f.Path, Data: f.Data}
	}
	// One Sync: the files reach the disk with one flush, before the create answers.
	if _, err := workspace.Sync(dir, entries, false); err != nil {
		return fmt.Errorf("seed %s project: %w", projectType, err)
	}
	return nil
}
