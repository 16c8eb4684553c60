// Package workspace manages per-session workspace volumes and safe
// host-side access to the files in them. A volume is a folder mounted at
// /workspace in the session's container, nosuid and nodev, whose size is a
// hard quota that code inside the container cannot exceed. Three backends
// make them:
//
//   - image: an ext4 image per session, every block allocated on the host
//     when it is made, loop-mounted. A full host disk can never fail a write
//     the session was told succeeded, but every session takes its whole
//     quota of host disk from the start.
//   - btrfs: a subvolume per session with a qgroup limit, on a btrfs state
//     filesystem or on a pool file allocated in full once and loop-mounted.
//     A session takes only what it writes; sessions share the pool, so a full
//     pool fails writes cleanly (ENOSPC) without touching what anyone wrote,
//     and a fork is a snapshot.
//   - project: a folder per session whose project quota is its limit, on an
//     ext4 or XFS state filesystem mounted with project quotas enforced
//     (prjquota). A session takes what it writes; a fork copies the files.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/snapshots/disk"
)

// Owner is the uid and gid that own the workspace: the container's "node" user.
const Owner = 1000

// Backend names.
const (
	BackendAuto    = "auto"    // btrfs on btrfs or an existing pool, project where quotas are enforced, a new pool when one is set, else image
	BackendImage   = "image"   // ext4 images allocated in full
	BackendBtrfs   = "btrfs"   // subvolumes with qgroup limits
	BackendProject = "project" // folders with project quotas, on ext4 or XFS mounted with prjquota
)

// Volumes creates and removes workspace volumes under one root folder.
type Volumes struct {
	root    string
	size    int64
	reserve func() int64 // bytes the host filesystem keeps free: a create that would cut into them is refused

	store  backend
	reason string // why store was chosen, for the start-up log

	allocMu sync.Mutex // held from checking the room to taking it, so two creates never take the same bytes

	writtenMu sync.Mutex
	written   writtenSum // Written's last answer
}

// writtenSum is a sum of what the volumes hold, and when it was taken.
type writtenSum struct {
	bytes   int64
	volumes int
	at      time.Time
}

// backend makes the volume of one session at base/mnt (base is root/<id>,
// made by Volumes) and says what it takes.
type backend interface {
	name() string
	create(ctx context.Context, id, mnt string) error
	// fork makes mnt a copy of the volume mounted at src.
	fork(ctx context.Context, src, id, mnt string) error
	// remove deletes the volume at mnt; it is not called for one never made.
	remove(ctx context.Context, id, mnt string) error
	usage(id, mnt string) (used, total int64, err error)
	// space is the room new volumes are admitted on, and the reserve they keep.
	space() (sp disk.Space, reserve int64, err error)
	// plan is the room on the host filesystem the volumes may come to take.
	plan(maxSessions int) (disk.Reservation, error)
}

// Option configures NewVolumes.
type Option func(*options)

type options struct {
	backend     string
	poolFile    string
	poolSize    int64
	poolReserve int64
}

// WithBackend picks the backend by name (BackendAuto, BackendImage or
// BackendBtrfs or BackendProject); the default is BackendAuto.
func WithBackend(name string) Option { return func(o *options) { o.backend = name } }

// WithPool names the pool file that holds a btrfs filesystem for the
// volumes when the root is not on btrfs itself, its size (0: use the file
// if it exists, never make one) and the free room creates keep in it.
func WithPool(file string, size, reserve int64) Option {
	return func(o *options) { o.poolFile, o.poolSize, o.poolReserve = file, size, reserve }
}

// NewVolumes returns a manager of volumes of size bytes under root, with
// the backend the options and the host pick (see Backend and Reason).
func NewVolumes(ctx context.Context, root string, size int64, opts ...Option) (*Volumes, error) {
	if size < 8<<20 {
		return nil, fmt.Errorf("workspace size %d bytes: at least 8 MiB", size)
	}
	o := options{backend: BackendAuto}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("create workspace root: %w", disk.HostFull(err))
	}
	v := &Volumes{root: root, size: size}
	var err error
	v.store, v.reason, err = pickBackend(ctx, v, o)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func pickBackend(ctx context.Context, v *Volumes, o options) (backend, string, error) {
	poolExists := false
	if o.poolFile != "" {
		_, err := os.Stat(o.poolFile)
		poolExists = err == nil
	}
	onBtrfs, err := isBtrfs(v.root)
	if err != nil {
		return nil, "", err
	}
	projectOK, projectWhy := false, "not tried"
	if !onBtrfs && (o.backend == BackendAuto || o.backend == BackendProject) {
		projectOK, projectWhy = projectQuotasEnforced(v.root)
	}
	switch o.backend {
	case BackendProject:
		if holdsImages(v.root) {
			return nil, "", fmt.Errorf("workspace backend project: %s holds image-backend workspaces; their sessions would be lost (destroy them first)", v.root)
		}
		if !projectOK {
			return nil, "", fmt.Errorf("workspace backend project: %s: %s", v.root, projectWhy)
		}
		if poolExists {
			return nil, "", fmt.Errorf("workspace backend project: the pool %s of the btrfs backend exists; its sessions would be lost (destroy them, or remove the pool when none is left)", o.poolFile)
		}
		return &projectQuotas{v: v}, "chosen (--workspace-backend project): a folder per session, limited by a project quota", nil
	case BackendImage:
		if poolExists {
			return nil, "", fmt.Errorf("workspace backend image: the pool %s of the btrfs backend exists; its sessions would be lost (destroy them, or remove the pool when none is left)", o.poolFile)
		}
		return &images{v: v}, "chosen (--workspace-backend image)", nil
	case BackendBtrfs, BackendAuto:
	default:
		return nil, "", fmt.Errorf("workspace backend %q: want auto, image, btrfs or project", o.backend)
	}
	switch {
	case onBtrfs && !poolExists:
		b, err := openBtrfs(ctx, v, "", 0)
		return b, "the workspace folder is on btrfs: a subvolume per session, limited by a qgroup", err
	case projectOK && !poolExists && o.backend == BackendAuto && !holdsImages(v.root):
		return &projectQuotas{v: v}, "the workspace folder's filesystem enforces project quotas: a folder per session, limited by a project quota", nil
	case o.poolFile != "" && (o.poolSize > 0 || poolExists):
		b, err := openPool(ctx, v, o)
		return b, fmt.Sprintf("pool file %s (--workspace-pool): a subvolume per session, limited by a qgroup", o.poolFile), err
	case o.backend == BackendBtrfs:
		return nil, "", fmt.Errorf("workspace backend btrfs: %s is not on btrfs and no pool is set (--workspace-pool SIZE)", v.root)
	}
	return &images{v: v}, "the workspace folder is not on btrfs, its filesystem enforces no project quotas (" + projectWhy + ") and no pool is set (--workspace-pool): an ext4 image allocated in full per session", nil
}

// holdsImages reports whether root holds workspaces of the image backend:
// a folder with quotas that already serves images stays on them.
func holdsImages(root string) bool {
	found, _ := filepath.Glob(filepath.Join(root, "*", "workspace.ext4"))
	return len(found) > 0
}

// SetReserve makes creates keep reserve() bytes free on the host
// filesystem that holds the volumes (for the session database, caches and
// logs), asked anew at every create: one that would leave less is refused
// with disk.ErrHostFull. Call it before any Create; without it nothing is
// kept. A pool keeps its own reserve (WithPool).
func (v *Volumes) SetReserve(reserve func() int64) { v.reserve = reserve }

// Reserve is the bytes creates keep free now (see SetReserve).
func (v *Volumes) Reserve() int64 {
	if v.reserve == nil {
		return 0
	}
	return v.reserve()
}

// Backend names the backend in use: BackendImage, BackendBtrfs or BackendProject.
func (v *Volumes) Backend() string { return v.store.name() }

// Reason says why the backend was chosen.
func (v *Volumes) Reason() string { return v.reason }

// Root is the folder the volumes live in.
func (v *Volumes) Root() string { return v.root }

// Size is the quota of every volume, in bytes.
func (v *Volumes) Size() int64 { return v.size }

// Dir is the host folder where the volume of id is mounted.
func (v *Volumes) Dir(id string) string { return filepath.Join(v.root, id, "mnt") }

// Space is the room new volumes are admitted on (the host filesystem, or
// the pool) and the reserve creates keep free in it.
func (v *Volumes) Space() (disk.Space, int64, error) { return v.store.space() }

// Plan is the room on the host filesystem the volumes may come to take
// when maxSessions sessions each have one.
func (v *Volumes) Plan(maxSessions int) (disk.Reservation, error) { return v.store.plan(maxSessions) }

// Create makes the volume of id and mounts it at Dir(id), owned by Owner.
// On failure nothing of it is left behind.
func (v *Volumes) Create(ctx context.Context, id string) (string, error) {
	return v.make(ctx, id, func(mnt string) error { return v.store.create(ctx, id, mnt) })
}

// Fork makes the volume of id a copy of the volume of src, as it is at the
// moment of the copy (a snapshot on btrfs, a copy of the files otherwise).
// The copy has the same quota. On failure nothing of it is left behind.
func (v *Volumes) Fork(ctx context.Context, src, id string) (string, error) {
	if err := validID(src); err != nil {
		return "", err
	}
	from := v.Dir(src)
	if _, err := os.Stat(from); err != nil {
		return "", fmt.Errorf("fork workspace %s: %w", src, err)
	}
	return v.make(ctx, id, func(mnt string) error { return v.store.fork(ctx, from, id, mnt) })
}

// ForksInPlace reports whether ForkInPlace is cheap here: true when a fork
// is a snapshot (btrfs), false where it copies files.
func (v *Volumes) ForksInPlace() bool { return v.store.name() == BackendBtrfs }

// displacedName is the folder, beside mnt, of the volume a ForkInPlace
// moved aside until it is discarded.
const displacedName = "displaced"

// ForkInPlace makes the volume of id, at the same Dir(id), a copy of the
// volume of src (as Fork does), the volume it held moved aside. discard
// deletes the old one; until then it stays whole, so a container that has
// it mounted can be moved onto the new one first. Remove deletes an old
// one never discarded. Only a backend that ForksInPlace can do it; on
// failure the volume of id is as it was.
func (v *Volumes) ForkInPlace(ctx context.Context, src, id string) (discard func(context.Context) error, err error) {
	if !v.ForksInPlace() {
		return nil, fmt.Errorf("fork workspace %s in place: the %s backend copies files", id, v.store.name())
	}
	if err := validID(src); err != nil {
		return nil, err
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	from, mnt := v.Dir(src), v.Dir(id)
	if _, err := os.Stat(from); err != nil {
		return nil, fmt.Errorf("fork workspace %s: %w", src, err)
	}
	aside := filepath.Join(v.root, id, displacedName)
	if err := os.Rename(mnt, aside); err != nil {
		return nil, fmt.Errorf("move workspace %s aside: %w", id, err)
	}
	if err := v.store.fork(ctx, from, id, mnt); err != nil {
		if _, serr := os.Lstat(mnt); serr == nil {
			_ = v.store.remove(context.WithoutCancel(ctx), id, mnt)
			_ = os.RemoveAll(mnt)
		}
		if rerr := os.Rename(aside, mnt); rerr != nil {
			err = errors.Join(err, fmt.Errorf("move workspace %s back: %w", id, rerr))
		}
		return nil, err
	}
	return func(ctx context.Context) error { return v.store.remove(ctx, id, aside) }, nil
}

func (v *Volumes) make(ctx context.Context, id string, fill func(mnt string) error) (dir string, retErr error) {
	if err := validID(id); err != nil {
		return "", err
	}
	base := filepath.Join(v.root, id)
	if err := os.Mkdir(base, 0o700); err != nil {
		return "", fmt.Errorf("create workspace %s: %w", id, disk.HostFull(err))
	}
	defer func() {
		if retErr != nil {
			_ = v.Remove(context.WithoutCancel(ctx), id)
		}
	}()
	dir = v.Dir(id)
	if err := fill(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Remove deletes the volume of id. Removing a volume that does not exist,
// or one half made, succeeds. It never follows links inside the volume.
func (v *Volumes) Remove(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	base := filepath.Join(v.root, id)
	for _, mnt := range []string{v.Dir(id), filepath.Join(base, displacedName)} {
		if _, err := os.Lstat(mnt); err == nil {
			if err := v.store.remove(ctx, id, mnt); err != nil {
				return err
			}
		}
	}
	// What is left is empty folders and the backend's own files: RemoveAll follows no link of the session's.
	if err := os.RemoveAll(base); err != nil {
		return fmt.Errorf("remove workspace %s: %w", id, err)
	}
	return nil
}

// List returns the IDs of every volume folder under the root.
func (v *Volumes) List() ([]string, error) {
	entries, err := os.ReadDir(v.root)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Usage reports the bytes used and the quota of the volume of id.
func (v *Volumes) Usage(id string) (used, total int64, err error) {
	if err := validID(id); err != nil {
		return 0, 0, err
	}
	return v.store.usage(id, v.Dir(id))
}

// writtenMaxAge is how long Written answers from its last sum: a pool's
// usage changes at each commit (5 s) anyway.
const writtenMaxAge = 5 * time.Second

// Written is what every volume holds (Usage's used, summed) and how many
// volumes there are, summed at most every writtenMaxAge: what the sessions
// wrote, against the room the backend has (Space).
func (v *Volumes) Written() (bytes int64, volumes int, err error) {
	v.writtenMu.Lock()
	defer v.writtenMu.Unlock()
	if w := v.written; !w.at.IsZero() && time.Since(w.at) < writtenMaxAge {
		return w.bytes, w.volumes, nil
	}
	ids, err := v.List()
	if err != nil {
		return 0, 0, err
	}
	var sum writtenSum
	for _, id := range ids {
		if used, _, err := v.Usage(id); err == nil { // one being made or removed has none yet
			sum.bytes += used
			sum.volumes++
		}
	}
	sum.at = time.Now()
	v.written = sum
	return sum.bytes, sum.volumes, nil
}

// mounted reports whether dir is a mount point, by comparing its device with its parent's.
func mounted(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// noDiscard turns discard off on the loop device mounted at dir: a trim
// (the host's fstrim timer trims every mounted filesystem) would punch
// holes in the image under it and hand its reserved blocks back to the host.
func noDiscard(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("stat mount: %w", err)
	}
	p := fmt.Sprintf("/sys/dev/block/%d:%d/queue/discard_max_bytes", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("turn off discard: %w", err)
	}
	return nil
}

// unmount detaches the filesystem mounted at dir, lazily when a process
// still holds a file in it (a container being killed): the kernel frees
// the loop device when the last user goes.
func unmount(dir string) error {
	for mounted(dir) {
		err := unix.Unmount(dir, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(dir, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return nil
}

func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("workspace id %q: not a plain name", id)
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
