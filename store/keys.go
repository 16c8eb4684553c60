package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Every bucket and key name of the database file.
var (
	bucketMeta     = []byte("meta")
	bucketSessions = []byte("sessions")

	keyVersion = []byte("version")
)

// sessionsBucket returns the sessions bucket of tx, which open() guarantees exists.
func sessionsBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketSessions)
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing: database not migrated", bucketSessions)
	}
	return b, nil
}

// metaBucket returns the meta bucket of tx, creating it when tx is writable.
func metaBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	if tx.Writable() {
		return tx.CreateBucketIfNotExists(bucketMeta)
	}
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing", bucketMeta)
	}
	return b, nil
}
