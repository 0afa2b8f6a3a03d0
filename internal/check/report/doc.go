// Package report renders the checker's analyses (package analyze) for
// people and for machines. It computes nothing new: every count and piece
// of evidence comes from the Analysis.
//
//   - [WriteTable]: the terminal table, scenario × backend → expected,
//     observed, verdict, aligned with spaces, no colour, and a final line
//     with the pass and fail counts.
//   - [WriteJSON]: `--json`, one analyze.Result per line.
//   - [WriteHTML]: one self-contained page (html/template, inline CSS and
//     SVG, no scripts or external assets): a summary table, then per run
//     the verdict and its reasons, each check's result, a timeline per lock
//     and the evidence of every finding.
//   - [WriteDir]: all of it into a directory, plus porcupine's
//     visualization of each linearizability check, linked from the page.
//
// # The timeline
//
// One picture per lock, time running right in ms from the first event of
// the history, one lane per client process that touched the lock. In a
// lane: the holder's windows, light for the span it acted as holder
// (observed: until it released, learned it lost the lease, or was killed)
// and dark for the span it was entitled to by its own reckoning (believed:
// until its valid_until); grey dashed boxes where the process was paused;
// dots for its writes, green accepted, orange refused as stale, red
// accepted although stale, white when the outcome is unknown, grey when it
// failed; a cross where it learned its lease was lost. Faults, and pauses
// of processes without a lane (server nodes), are orange or grey bands
// across all lanes, labelled above. Every mark has a tooltip.
//
// All functions are safe for concurrent use; they only read the analyses.
package report
