package report_test

import (
	"os"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/check/report"
)

func boolp(b bool) *bool { return &b }

// The terminal table of two runs: the fenced store protected the data; the
// unfenced control run shows the lost update it exists to show.
func ExampleWriteTable() {
	results := []analyze.Result{
		{Scenario: "pause-33-34", Backend: "fencer", Expected: analyze.ExpectSafe, Linearizable: boolp(true),
			StaleRejected: 1, Verdict: analyze.VerdictPass, Observed: "1 stale rejected, 1 observed overlap"},
		{Scenario: "pause-33-34-unfenced", Backend: "fencer", Expected: analyze.ExpectViolation,
			StaleAccepted: 1, LostUpdates: 1, Verdict: analyze.VerdictPass, Observed: "1 stale accepted, 1 lost update"},
		{Scenario: "redis-failover", Backend: "redis", Expected: analyze.ExpectViolation,
			Verdict: analyze.VerdictFail, Observed: "no anomaly"},
	}
	if err := report.WriteTable(os.Stdout, results); err != nil {
		panic(err)
	}
	// Output:
	// SCENARIO              BACKEND  EXPECTED   OBSERVED                              VERDICT
	// pause-33-34           fencer   safe       1 stale rejected, 1 observed overlap  pass
	// pause-33-34-unfenced  fencer   violation  1 stale accepted, 1 lost update       pass
	// redis-failover        redis    violation  no anomaly                            FAIL
	//
	// 3 runs: 2 passed, 1 failed
}
