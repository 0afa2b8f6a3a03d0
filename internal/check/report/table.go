package report

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/fencerlock/fencer/internal/check/analyze"
)

// WriteTable writes the terminal table, one row per result:
//
//	SCENARIO     BACKEND  EXPECTED   OBSERVED                              VERDICT
//	pause-33-34  fencer   safe       1 stale rejected, 1 observed overlap  pass
//	pause-33-34  redlock  violation  no anomaly                            FAIL
//
//	2 runs: 1 passed, 1 failed
//
// Columns are aligned with spaces (no colour, no tabs), so it reads the
// same in a terminal, a CI log or a file. A failed verdict is written in
// capitals to stand out without colour. It returns the first write error.
func WriteTable(w io.Writer, results []analyze.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tBACKEND\tEXPECTED\tOBSERVED\tVERDICT")
	pass, fail := 0, 0
	for _, r := range results {
		v := string(r.Verdict)
		if r.Verdict == analyze.VerdictPass {
			pass++
		} else {
			fail++
			v = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(r.Scenario), cell(r.Backend), cell(string(r.Expected)), cell(r.Observed), v)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("report: write the table: %w", err)
	}
	if _, err := fmt.Fprintf(w, "\n%s: %d passed, %d failed\n", runs(len(results)), pass, fail); err != nil {
		return fmt.Errorf("report: write the table: %w", err)
	}
	return nil
}

func runs(n int) string {
	if n == 1 {
		return "1 run"
	}
	return fmt.Sprintf("%d runs", n)
}

// cell keeps a table cell on one line and out of tabwriter's way.
func cell(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\t' || c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// WriteJSON writes one JSON object per result, one per line (JSON lines),
// in the order given: the output of `fencer check --json`. The keys are
// those of analyze.Result.
func WriteJSON(w io.Writer, results []analyze.Result) error {
	enc := json.NewEncoder(w)
	for i := range results {
		if err := enc.Encode(&results[i]); err != nil {
			return fmt.Errorf("report: write the JSON result of %s/%s: %w", results[i].Scenario, results[i].Backend, err)
		}
	}
	return nil
}

// Results returns the Result of each analysis, in order.
func Results(analyses []*analyze.Analysis) []analyze.Result {
	out := make([]analyze.Result, len(analyses))
	for i, a := range analyses {
		out[i] = a.Result
	}
	return out
}
