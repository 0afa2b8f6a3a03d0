// Package check is `fencer check`: it runs the scenarios of package
// scenario against the backends each names, every run on its own fresh
// processes (package harness), analyzes each run's history (package
// analyze) and applies the scenario's own checks, and hands the analyses
// to package report. It is the part of the checker that decides what runs,
// in which order, with which seed, and how long each may take.
//
// The split follows etcd's robustness tests (STYLE.md, item 8):
//
//	traffic    package traffic: the client workers and what they record
//	failpoints package failpoint (in the workers), package harness (the
//	           nemesis: processes, links, clocks), package scenario (which
//	           faults, when, per scenario)
//	model      package analyze's checks and porcupine models
//	validation package analyze's verdict rules, plus each scenario's Check
//	report     package report
//
// Runs are sequential: the scenarios measure timing on a shared machine,
// and two runs at once would disturb each other's pauses and leases.
package check
