package runtime

import "strings"

// Kind is what a session record stands for. Clients name sessions; the
// daemon's own records start with '~', which is outside the sessionId
// alphabet, so no client can name (or reach) one.
type Kind int

const (
	// KindSession is a client's session.
	KindSession Kind = iota
	// KindPool is a warm container waiting to become a session.
	KindPool
	// KindLayerBuilder is a private session building a dependency layer.
	KindLayerBuilder
)

// Record ID prefixes of the daemon's own records. KindOf is the only reader.
const (
	poolPrefix         = "~pool-"
	layerBuilderPrefix = "~deps-"
)

// KindOf classifies a record by its ID. The kind is derived, not stored: a
// warm container's record becomes a session by being renamed (store.Rename),
// and records written by earlier builds classify the same way.
func KindOf(recordID string) Kind {
	switch {
	case strings.HasPrefix(recordID, poolPrefix):
		return KindPool
	case strings.HasPrefix(recordID, layerBuilderPrefix):
		return KindLayerBuilder
	}
	return KindSession
}

func (k Kind) String() string {
	switch k {
	case KindPool:
		return "pool"
	case KindLayerBuilder:
		return "layer-builder"
	}
	return "session"
}
