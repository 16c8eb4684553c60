package npmproxy

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/servcraft/servcraftd/runtime/lrubudget"
)

// ErrInstallBudget is the cause of a request refused because its install
// already read its budget of bytes from upstream (Config.InstallBytes). npm
// sees a 403 whose JSON body says so, and prints it.
var ErrInstallBudget = errors.New("this install read its budget of bytes from the registry")

// overBudget refuses an upstream fetch once rec has read the install budget
// or was refused something for it: the install is failing anyway.
func (p *Proxy) overBudget(rec *Recorder) error {
	if rec.bytesUp.Load() < p.install && !rec.budgetExceeded.Load() {
		return nil
	}
	rec.budgetExceeded.Store(true)
	return fmt.Errorf("%w (%d bytes); nothing more is fetched for it", ErrInstallBudget, p.install)
}

// remaining is how many more bytes rec may read from upstream.
func (p *Proxy) remaining(rec *Recorder) int64 { return max(p.install-rec.bytesUp.Load(), 0) }

// tarballKey names a cached tarball in the index: its path under the cache.
func tarballKey(sum checksum, cacheDir string) string {
	rel, _ := filepath.Rel(cacheDir, sum.path(cacheDir))
	return rel
}

// indexTarballs indexes the cached tarballs, least recently used first (by
// modification time, which a hit moves), and evicts past the budget.
func (p *Proxy) indexTarballs() error {
	var all []lrubudget.Found
	for _, a := range algorithms {
		entries, err := os.ReadDir(filepath.Join(p.cacheDir, a.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			all = append(all, lrubudget.Found{Key: filepath.Join(a.name, e.Name()), Size: diskSize(info), Used: info.ModTime()})
		}
	}
	p.evict(p.tarballs.Load(all))
	return nil
}

// cached records a tarball just moved into the cache and evicts the least
// recently used ones past the budget.
func (p *Proxy) cached(key string) {
	info, err := os.Lstat(filepath.Join(p.cacheDir, key))
	if err != nil {
		return
	}
	p.evict(p.tarballs.Add(key, diskSize(info)))
}

// used marks a cached tarball as just used, in the index and on disk.
func (p *Proxy) used(key string) {
	if p.tarballs.Touch(key) {
		now := time.Now()
		_ = os.Chtimes(filepath.Join(p.cacheDir, key), now, now)
	}
}

func (p *Proxy) evict(keys []string) {
	for _, k := range keys {
		if err := os.Remove(filepath.Join(p.cacheDir, k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			slog.Error("evict cached tarball", "tarball", k, "err", err)
		}
	}
}

// diskSize is what a file takes on disk.
func diskSize(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
