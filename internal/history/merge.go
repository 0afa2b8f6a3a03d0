package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// ReadFile reads the history file at path. Only lines that end in a newline
// are events: a last line without one was cut off by a process that died
// while writing it, and is skipped with torn set to true. Any other line
// that is not an event (bad JSON, no kind, no process) is an error naming
// the file and the line; blank lines are skipped.
func ReadFile(path string) (events []Event, torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	events, torn, err = read(f)
	if err != nil {
		return nil, false, fmt.Errorf("history: %s: %w", path, err)
	}
	return events, torn, nil
}

func read(r io.Reader) (events []Event, torn bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			// What is left has no newline: torn, unless there is nothing.
			return events, len(bytes.TrimSpace(line)) > 0, nil
		}
		if err != nil {
			return nil, false, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, false, fmt.Errorf("line %d is not a JSON event (only the last line may be torn): %w", n, err)
		}
		if e.Kind == "" || e.Process == "" {
			return nil, false, fmt.Errorf("line %d has no kind or no process; every event needs both", n)
		}
		events = append(events, e)
	}
}

// Merge reads the history files and returns all their events ordered by
// Time. Events with equal times keep the order of paths and, within a file,
// of lines, so the result is deterministic. torn counts the files whose
// torn last line was skipped (see [ReadFile]). A file that cannot be read,
// or holds a broken line other than its last, is an error.
func Merge(paths ...string) (events []Event, torn int, err error) {
	for _, p := range paths {
		evs, t, err := ReadFile(p)
		if err != nil {
			return nil, 0, err
		}
		if t {
			torn++
		}
		events = append(events, evs...)
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time < events[j].Time })
	return events, torn, nil
}
