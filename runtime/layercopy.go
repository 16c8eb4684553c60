package runtime

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// errLayerTooLarge is the cause of a layer refused for its size.
var errLayerTooLarge = fmt.Errorf("dependency layer too large: %w", errdefs.ErrResourceExhausted)

// layerMode is the only mode a file or folder of a layer ever has: 0755 for
// folders and executables, 0644 for the rest. No setuid, setgid or sticky bit.
func layerMode(m fs.FileMode) fs.FileMode {
	if m.IsDir() || m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// copyTree copies the entries names of folder src into folder dst (which
// exists): folders, regular files and symbolic links, never following a
// link. Modes are normalised by layerMode and everything is owned by
// uid:gid; a device, FIFO or socket refuses the copy. The bytes the copy
// takes on disk (blocks, folders included) are returned; past limit the copy
// stops with errLayerTooLarge. Nothing may change src while it runs: a
// builder's workspace once its install ended, or the cache itself.
func copyTree(src, dst string, names []string, uid, gid int, limit int64) (int64, error) {
	var used int64
	for _, name := range names {
		root := filepath.Join(src, name)
		if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
			continue // a project without dependencies has no node_modules
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			n, err := copyEntry(p, filepath.Join(dst, rel), d.Type(), uid, gid)
			if used += n; used > limit {
				return fmt.Errorf("%w: more than %d bytes", errLayerTooLarge, limit)
			}
			return err
		})
		if err != nil {
			return used, fmt.Errorf("copy %s: %w", name, err)
		}
	}
	return used, nil
}

// copyEntry copies one entry of type typ and returns the bytes it takes.
func copyEntry(src, dst string, typ fs.FileMode, uid, gid int) (int64, error) {
	switch {
	case typ.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return 0, err
		}
		if err := os.Lchown(dst, uid, gid); err != nil {
			return 0, err
		}
	case typ&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return 0, err
		}
		if err := os.Symlink(target, dst); err != nil {
			return 0, err
		}
		if err := os.Lchown(dst, uid, gid); err != nil {
			return 0, err
		}
	case typ.IsRegular():
		if err := copyFile(src, dst, uid, gid); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("%s: a %v is never put in a layer: %w", src, typ.Type(), errdefs.ErrInvalidArgument)
	}
	return diskBytes(dst)
}

// copyFile copies a regular file without following links on either side.
func copyFile(src, dst string, uid, gid int) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s: changed under the copy: %w", src, errdefs.ErrInvalidArgument)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, layerMode(info.Mode()))
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chown(uid, gid)
	}
	if err == nil {
		err = out.Chmod(layerMode(info.Mode())) // the umask may have cut the mode
	}
	return errors.Join(err, out.Close())
}

// diskBytes is what p takes on disk: its allocated blocks.
func diskBytes(p string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return 0, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	return st.Blocks * 512, nil
}

// treeDiskBytes is what the folder dir takes on disk, and whether it holds
// anything that has no place in a layer (a device, FIFO, socket, or a
// setuid, setgid or sticky bit).
func treeDiskBytes(dir string) (used int64, clean bool, err error) {
	clean = true
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			used += st.Blocks * 512
		}
		m := info.Mode()
		if m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || !(m.IsDir() || m.IsRegular() || m&fs.ModeSymlink != 0) {
			clean = false
		}
		return nil
	})
	return used, clean, err
}

// writeLayerTar writes the entries names of the layer folder dir to w as a
// tar stream: folders, regular files and links with layer modes, no owners
// (the extracting sandbox user owns what it writes).
func writeLayerTar(w io.Writer, dir string, names []string) error {
	tw := tar.NewWriter(w)
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		err := filepath.WalkDir(filepath.Join(dir, name), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			hdr := &tar.Header{Name: filepath.ToSlash(rel), Format: tar.FormatPAX}
			info, err := d.Info()
			if err != nil {
				return err
			}
			hdr.Mode = int64(layerMode(info.Mode()))
			hdr.ModTime = info.ModTime()
			switch {
			case d.IsDir():
				hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			case d.Type()&fs.ModeSymlink != 0:
				hdr.Typeflag = tar.TypeSymlink
				if hdr.Linkname, err = os.Readlink(p); err != nil {
					return err
				}
			case d.Type().IsRegular():
				hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
			default:
				return fmt.Errorf("%s: a %v in a layer: %w", p, d.Type(), errdefs.ErrDataLoss)
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if hdr.Typeflag != tar.TypeReg {
				return nil
			}
			f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, hdr.Size)
			return err
		})
		if err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
	}
	return tw.Close()
}
