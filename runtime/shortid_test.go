package runtime

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/store"
)

func TestShortID(t *testing.T) {
	for id, want := range map[string]string{
		"session-1796051266938-t3ow5gbl26b": "t3ow5gbl26b",
		"plain":                             "plain",
		"a-":                                "",
		"-x":                                "x",
	} {
		if got := ShortID(id); got != want {
			t.Errorf("ShortID(%q) = %q, want %q", id, got, want)
		}
	}
}

// resolveTo checks what PreviewSession makes of id.
func resolveTo(t *testing.T, m *Runtime, id, want string) {
	t.Helper()
	got, err := m.previews.PreviewSession(id)
	if err != nil || got != want {
		t.Fatalf("PreviewSession(%q) = %q, %v; want %q", id, got, err, want)
	}
}

func TestPreviewIndexFollowsSessions(t *testing.T) {
	m, db, _ := unitManager(t)
	a, b := "session-1796051266938-t3ow5gbl26b", "session-1796051266999-zz9"

	// A restart finds the store's running client sessions, and only those.
	running(t, m, db, a)
	running(t, m, db, poolPrefix+"warm-abc")
	made := newRecord("session-1-half", "u-half", "img", "js", t.TempDir(), store.Limits{}, m.clock.read(), m.cfg.IdleTimeout)
	if err := db.Create(made); err != nil { // still creating: not live
		t.Fatal(err)
	}
	if err := m.previews.load(m.db); err != nil {
		t.Fatal(err)
	}
	resolveTo(t, m, a, a)
	resolveTo(t, m, "t3ow5gbl26b", a)
	resolveTo(t, m, "half", "half") // unknown: unchanged, for the store to refuse
	resolveTo(t, m, "abc", "abc")   // a warm container is nobody's preview

	// Create: a new session is found by its short id at once.
	m.previews.add(b, "u-b")
	resolveTo(t, m, "zz9", b)
	if inst, ok := m.previews.PreviewInstance("zz9"); !ok || inst != "u-b" {
		t.Fatalf("instance of zz9: %q %v, want u-b", inst, ok)
	}
	if _, ok := m.previews.PreviewInstance("nobody"); ok {
		t.Fatal("an instance for a session that is not there")
	}

	// Two sessions ending the same way: the short id is ambiguous, the full ids are not.
	c := "session-1796051267000-zz9"
	m.previews.add(c, "u-c")
	if _, ok := m.previews.PreviewInstance("zz9"); ok {
		t.Fatal("an instance for an ambiguous short id")
	}
	if _, err := m.previews.PreviewSession("zz9"); !errors.Is(err, ErrAmbiguousPreview) || !errdefs.IsNotFound(err) {
		t.Fatalf("ambiguous short id: %v", err)
	}
	resolveTo(t, m, b, b)
	resolveTo(t, m, c, c)

	// Destroy or reap (teardown) of one leaves the other as the only match.
	m.previews.remove(c)
	resolveTo(t, m, "zz9", b)
	m.previews.remove(c) // twice is fine
	m.previews.remove("never-added")
	resolveTo(t, m, "zz9", b)

	// Adoption: a warm record renamed to a session enters under the new name.
	m.previews.add(poolPrefix+"p-q", "u-p")
	resolveTo(t, m, "q", "q")
	m.previews.add("session-5-q", "u-q")
	resolveTo(t, m, "q", "session-5-q")

	// A full id wins over another session's short id.
	m.previews.add("zz9", "u-zz9")
	resolveTo(t, m, "zz9", "zz9")

	// A restart rebuilds from the store: what is not there is gone.
	if err := m.previews.load(m.db); err != nil {
		t.Fatal(err)
	}
	resolveTo(t, m, "zz9", "zz9")
	resolveTo(t, m, "q", "q")
	resolveTo(t, m, "t3ow5gbl26b", a)
}
