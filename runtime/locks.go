package runtime

import "sync"

// keyedLocks hands out one RWMutex per session ID, dropped when nobody holds
// or waits for it, so the map stays as small as the set of busy sessions.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.RWMutex
	refs int
}

func (k *keyedLocks) get(key string) *keyedLock {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	return l
}

func (k *keyedLocks) put(key string, l *keyedLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.locks, key)
	}
}

// Lock takes key exclusively and returns its unlock.
func (k *keyedLocks) Lock(key string) func() {
	l := k.get(key)
	l.Lock()
	return func() { l.Unlock(); k.put(key, l) }
}

// RLock takes key shared and returns its unlock.
func (k *keyedLocks) RLock(key string) func() {
	l := k.get(key)
	l.RLock()
	return func() { l.RUnlock(); k.put(key, l) }
}
