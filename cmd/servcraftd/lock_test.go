package main

import (
	"path/filepath"
	"testing"

	"github.com/servcraft/servcraftd/store"
)

func TestLockDatabaseKeepsDaemonsOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), dbFileName)
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDatabase(path); err == nil {
		t.Fatal("locked the database of a running daemon")
	}
	db.Close()
	unlock, err := lockDatabase(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := store.Open(path); err == nil {
		t.Fatal("a daemon could open the database during a gc")
	}
}
