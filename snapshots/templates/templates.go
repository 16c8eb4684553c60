// Package templates holds the starter projects a new session's workspace is
// seeded with, one folder per project type, kept as real files.
package templates

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"sort"

	"github.com/containerd/errdefs"
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
