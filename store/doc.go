// Package store keeps servcraftd's session records in one bbolt file.
//
// Schema (every key is declared in keys.go; buckets are reached only through its helpers):
//
//	meta/
//	  version        -> uint64, big endian: the schema version (see migrations.go)
//	sessions/
//	  <sessionId>    -> JSON of Session
//
// Every operation is one transaction, and values are copied out before it ends.
// Fields added to Session later are optional in its JSON (absent means zero),
// so they need no migration; a change of meaning does.
// Open checks a file before bbolt maps it (Check, check.go): a damaged file
// is refused with ErrDamaged, a newer schema with ErrNewerSchema, never a crash.
// The store imports none of servcraftd's other packages.
package store
