package runtime

import "time"

// SetClock makes now the manager's time source, so that a test moves
// deadlines instead of sleeping past them.
func SetClock(m *Manager, now func() time.Time) { m.setClock(now) }

// WaitLayerBuilds waits for the dependency layer builds installs started.
func WaitLayerBuilds(m *Manager) { m.layerRuns.Wait() }

// WaitStarterLayers waits until every starter layer is built (true) or the
// attempt failed (false).
func WaitStarterLayers(m *Manager) bool {
	if m.starters == nil {
		return false
	}
	for key, manifest := range m.starters.manifests {
		if !m.buildLayer(key, manifest, nil, true) {
			return false
		}
	}
	return true
}
