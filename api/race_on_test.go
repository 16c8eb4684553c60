//go:build race

package api

// raceEnabled: the race detector's shadow memory grows the RSS of whatever
// runs, so RSS bounds are looser under it (make race-test) than without.
const raceEnabled = true
