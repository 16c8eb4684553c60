package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// State is where a session is in its life.
type State string

// Session states. A record is written as Creating before any containerd work
// starts and as Destroying before teardown begins, so a crash at any point
// leaves a record the next start can finish or undo.
const (
	StateCreating   State = "creating"
	StateRunning    State = "running"
	StateDestroying State = "destroying"
)

// Limits are the resources a session's container was created with.
type Limits struct {
	MemoryBytes    int64  `json:"memoryBytes"`
	CPUQuota       int64  `json:"cpuQuota"`
	CPUPeriod      uint64 `json:"cpuPeriod"`
	PidsLimit      int64  `json:"pidsLimit"`
	WorkspaceBytes int64  `json:"workspaceBytes"`
}

// Process is a background process started in a session, kept so that a
// restarted daemon finds it again (containerd keeps it running meanwhile).
type Process struct {
	ID        string    `json:"id"`
	Command   string    `json:"command"`
	StartedAt time.Time `json:"startedAt"`
}

// Session is everything needed to rebuild a session's picture after a restart.
type Session struct {
	SessionID    string    `json:"sessionId"`
	UUID         string    `json:"uuid"`
	ContainerID  string    `json:"containerId"`
	Image        string    `json:"image"`
	ProjectType  string    `json:"projectType"`
	Workspace    string    `json:"workspace"`
	Limits       Limits    `json:"limits"`
	State        State     `json:"state"`
	Extended     bool      `json:"extended"`
	CreatedAt    time.Time `json:"createdAt"`
	LastActiveAt time.Time `json:"lastActiveAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
	Processes    []Process `json:"processes,omitempty"`
	// DependenciesMissing says what of its starter project's dependencies the
	// session lacks, and what to do ("": nothing).
	DependenciesMissing string `json:"dependenciesMissing,omitempty"`
}

// DB is the session database.
type DB struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database at path and migrates it to
// SchemaVersion. A file that fails Check is refused (ErrDamaged,
// ErrNewerSchema) before bbolt maps it.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store folder: %w", err)
	}
	if err := Check(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate store %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the database file.
func (d *DB) Close() error { return d.db.Close() }

// Path is the database file's location.
func (d *DB) Path() string { return d.db.Path() }

// Create stores a new record; errdefs.ErrAlreadyExists if its sessionId is taken.
func (d *DB) Create(s Session) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		if b.Get([]byte(s.SessionID)) != nil {
			return fmt.Errorf("session %q: %w", s.SessionID, errdefs.ErrAlreadyExists)
		}
		return putSession(b, s)
	})
}

// Get returns the record of sessionID; errdefs.ErrNotFound if there is none.
func (d *DB) Get(sessionID string) (Session, error) {
	var s Session
	err := d.db.View(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		s, err = getSession(b, sessionID)
		return err
	})
	return s, err
}

// Update applies fn to the record of sessionID in one transaction and returns the result.
// fn's error aborts the update and is returned as is.
func (d *DB) Update(sessionID string, fn func(*Session) error) (Session, error) {
	var s Session
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		if s, err = getSession(b, sessionID); err != nil {
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		s.SessionID = sessionID
		return putSession(b, s)
	})
	return s, err
}

// Touch sets LastActiveAt (and ExpiresAt = at+idle) on many sessions in one transaction,
// never moving either backwards. Unknown sessions are skipped: they were destroyed meanwhile.
func (d *DB) Touch(lastActive map[string]time.Time, idle time.Duration) error {
	if len(lastActive) == 0 {
		return nil
	}
	return d.db.Update(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		for id, at := range lastActive {
			s, err := getSession(b, id)
			if errdefs.IsNotFound(err) {
				continue
			} else if err != nil {
				return err
			}
			if !at.After(s.LastActiveAt) {
				continue
			}
			s.LastActiveAt = at
			if exp := at.Add(idle); exp.After(s.ExpiresAt) {
				s.ExpiresAt = exp
			}
			if err := putSession(b, s); err != nil {
				return err
			}
		}
		return nil
	})
}

// Delete removes the record of sessionID; errdefs.ErrNotFound if there is none.
func (d *DB) Delete(sessionID string) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		if b.Get([]byte(sessionID)) == nil {
			return fmt.Errorf("session %q: %w", sessionID, errdefs.ErrNotFound)
		}
		return b.Delete([]byte(sessionID))
	})
}

// List returns every record, ordered by sessionId.
func (d *DB) List() ([]Session, error) {
	var out []Session
	err := d.db.View(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		out, err = listBucket(b)
		return err
	})
	return out, err
}

// Count is how many records there are, without decoding them: what a
// create checks against the session cap, cheap at a thousand sessions
// (List decodes each, about 6 ms for 1000).
func (d *DB) Count() (int, error) {
	n := 0
	err := d.db.View(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// listBucket decodes every record of the sessions bucket b, ordered by sessionId.
func listBucket(b *bolt.Bucket) ([]Session, error) {
	var out []Session
	err := b.ForEach(func(k, v []byte) error {
		var s Session
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("decode session %q: %w", k, err)
		}
		out = append(out, s)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].SessionID < out[j].SessionID })
	return out, err
}

func getSession(b *bolt.Bucket, sessionID string) (Session, error) {
	var s Session
	v := b.Get([]byte(sessionID))
	if v == nil {
		return s, fmt.Errorf("session %q: %w", sessionID, errdefs.ErrNotFound)
	}
	// json.Unmarshal copies what it keeps, so nothing refers to bbolt's memory afterwards.
	if err := json.Unmarshal(v, &s); err != nil {
		return s, fmt.Errorf("decode session %q: %w", sessionID, err)
	}
	return s, nil
}

func putSession(b *bolt.Bucket, s Session) error {
	v, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode session %q: %w", s.SessionID, err)
	}
	return b.Put([]byte(s.SessionID), v)
}

// Rename moves the record of oldID to the sessionId fn gives it, in one
// transaction: errdefs.ErrNotFound if oldID has no record,
// errdefs.ErrAlreadyExists if the new sessionId is taken.
func (d *DB) Rename(oldID string, fn func(*Session) error) (Session, error) {
	var s Session
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, err := sessionsBucket(tx)
		if err != nil {
			return err
		}
		if s, err = getSession(b, oldID); err != nil {
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		if s.SessionID == oldID {
			return putSession(b, s)
		}
		if b.Get([]byte(s.SessionID)) != nil {
			return fmt.Errorf("session %q: %w", s.SessionID, errdefs.ErrAlreadyExists)
		}
		if err := b.Delete([]byte(oldID)); err != nil {
			return err
		}
		return putSession(b, s)
	})
	return s, err
}
