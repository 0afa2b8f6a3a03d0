//go:build !race

package server

// About a minute on two idle cores; see the top of sim_test.go.
const (
	simRace            = false
	simDefaultSeeds    = 1000
	simDefaultControls = 20
)
