package main

import (
	"testing"

	"github.com/servcraft/servcraftd/store"
	"github.com/servcraft/servcraftd/store/statedir"
)

func TestLockDatabaseKeepsDaemonsOut(t *testing.T) {
	path := statedir.Dir(t.TempDir()).DB()
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
