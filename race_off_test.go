//go:build !race

package tokenauth

// raceEnabled tells allocation tests whether the race detector, which
// allocates on its own, is on.
const raceEnabled = false
