//go:build race

package server

// The race detector makes a seed about three times as expensive: fewer
// seeds by default, so that `go test -race ./server` stays within a couple
// of minutes on two cores. CI runs the full count without -race as well
// (see sim_norace_test.go).
const (
	simRace            = true
	simDefaultSeeds    = 300
	simDefaultControls = 5
)
