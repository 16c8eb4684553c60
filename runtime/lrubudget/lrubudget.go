// Package lrubudget keeps the accounting of a cache on disk held to a byte
// budget: which entries it holds, how many bytes each takes, which was used
// least recently, and which must go so the rest fit. It touches no files;
// the cache that owns it deletes what it is told to evict.
package lrubudget

import (
	"container/list"
	"slices"
	"sync"
	"time"
)

// Index is a byte-budgeted least-recently-used index of cache entries. It
// is safe for concurrent use.
type Index struct {
	budget int64

	mu      sync.Mutex
	used    int64
	order   *list.List // of *entry, most recently used at the front
	entries map[string]*list.Element
}

type entry struct {
	key  string
	size int64
}

// New returns an empty index that keeps at most budget bytes.
func New(budget int64) *Index {
	return &Index{budget: budget, order: list.New(), entries: map[string]*list.Element{}}
}

// Budget is the most bytes the index keeps.
func (x *Index) Budget() int64 { return x.budget }

// Add records key as taking size bytes and as the most recently used entry
// (replacing what was recorded of key before), and returns the least
// recently used keys that must be evicted, oldest first, to bring the total
// back within the budget; they are no longer counted. key itself is never
// among them: a caller that adds something larger than the budget is told
// nothing, so it must check the size of an entry against its own cap.
func (x *Index) Add(key string, size int64) (evict []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if el, ok := x.entries[key]; ok {
		x.used -= el.Value.(*entry).size
		x.order.Remove(el)
	}
	x.entries[key] = x.order.PushFront(&entry{key: key, size: size})
	x.used += size
	for x.used > x.budget {
		el := x.order.Back()
		e := el.Value.(*entry)
		if e.key == key {
			break
		}
		x.order.Remove(el)
		delete(x.entries, e.key)
		x.used -= e.size
		evict = append(evict, e.key)
	}
	return evict
}

// Found is an entry found on disk: its key, the bytes it takes and when it
// was last used.
type Found struct {
	Key  string
	Size int64
	Used time.Time
}

// Load adds what a cache found on disk at start, least recently used first,
// and returns the keys that must be evicted to bring it within the budget.
func (x *Index) Load(found []Found) (evict []string) {
	found = slices.Clone(found)
	slices.SortFunc(found, func(a, b Found) int { return a.Used.Compare(b.Used) })
	for _, f := range found {
		evict = append(evict, x.Add(f.Key, f.Size)...)
	}
	return evict
}

// Touch marks key as just used; false if the index does not hold it.
func (x *Index) Touch(key string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.entries[key]
	if ok {
		x.order.MoveToFront(el)
	}
	return ok
}

// Has reports whether the index holds key, without counting it as a use.
func (x *Index) Has(key string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.entries[key]
	return ok
}

// Remove forgets key (after its files were found gone or damaged).
func (x *Index) Remove(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if el, ok := x.entries[key]; ok {
		x.used -= el.Value.(*entry).size
		x.order.Remove(el)
		delete(x.entries, key)
	}
}

// Used is the number of bytes the recorded entries take.
func (x *Index) Used() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.used
}

// Len is the number of recorded entries.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.entries)
}
