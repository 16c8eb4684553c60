package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// migration moves the schema from version-1 to version.
type migration struct {
	version int
	name    string
	migrate func(tx *bolt.Tx) error
}

// migrations lists every schema change in order; the last version is the current schema.
var migrations = []migration{
	{version: 1, name: "create sessions bucket", migrate: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSessions)
		return err
	}},
}

// SchemaVersion is the schema this build reads and writes.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

func readVersion(tx *bolt.Tx) (int, error) {
	b, err := metaBucket(tx)
	if err != nil {
		return 0, err
	}
	v := b.Get(keyVersion)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("schema version: %d bytes, want 8", len(v))
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

// migrate brings the database to SchemaVersion in one transaction, refusing newer schemas.
func migrate(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		current, err := readVersion(tx)
		if err != nil {
			return err
		}
		if current > SchemaVersion() {
			return fmt.Errorf("database schema %d is newer than this build's %d", current, SchemaVersion())
		}
		for _, m := range migrations {
			if m.version <= current {
				continue
			}
			if err := m.migrate(tx); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			current = m.version
		}
		b, err := metaBucket(tx)
		if err != nil {
			return err
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(current))
		return b.Put(keyVersion, buf[:])
	})
}
