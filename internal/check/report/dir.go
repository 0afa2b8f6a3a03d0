package report

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fencerlock/fencer/internal/check/analyze"
)

// The files WriteDir writes, besides the porcupine visualizations.
const (
	IndexFile   = "index.html"
	ResultsFile = "results.jsonl"
)

// Files lists what WriteDir wrote, as paths inside its directory.
type Files struct {
	// Index is the HTML report.
	Index string
	// Results holds one JSON Result per line, as WriteJSON writes them.
	Results string
	// Visualizations are porcupine's views, one per run and
	// linearizability check that ran.
	Visualizations []string
}

// WriteDir writes the whole report into dir, creating it if needed:
// index.html (WriteHTML, linking to the visualizations), results.jsonl
// (WriteJSON) and, for every analysis and linearizability check that ran,
// porcupine's visualization, named NN-scenario-backend-check.html. Existing
// files of those names are replaced. Errors name the file.
func WriteDir(dir string, analyses []*analyze.Analysis) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("report: create the report directory: %w", err)
	}
	files := Files{Index: filepath.Join(dir, IndexFile), Results: filepath.Join(dir, ResultsFile)}
	links := map[[2]string]string{}
	for i, a := range analyses {
		for _, c := range []*analyze.LinearCheck{&a.Linearizability.Store, &a.Linearizability.Lock} {
			if !c.CanVisualize() {
				continue
			}
			name := fmt.Sprintf("%02d-%s-%s-%s.html", i+1, fileSafe(a.Result.Scenario), fileSafe(a.Result.Backend), c.Name)
			if err := writeFile(filepath.Join(dir, name), func(w *bufio.Writer) error { return c.Visualize(w) }); err != nil {
				return files, err
			}
			links[[2]string{fmt.Sprint(i), c.Name}] = name
			files.Visualizations = append(files.Visualizations, filepath.Join(dir, name))
		}
	}
	link := func(i int, check string) string { return links[[2]string{fmt.Sprint(i), check}] }
	if err := writeFile(files.Index, func(w *bufio.Writer) error {
		return WriteHTML(w, analyses, &HTMLOptions{VisualizationLink: link})
	}); err != nil {
		return files, err
	}
	if err := writeFile(files.Results, func(w *bufio.Writer) error { return WriteJSON(w, Results(analyses)) }); err != nil {
		return files, err
	}
	return files, nil
}

// writeFile creates path and fills it with write, reporting any failure
// with the path.
func writeFile(path string, write func(*bufio.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	w := bufio.NewWriter(f)
	err = write(w)
	err = errors.Join(err, w.Flush(), f.Close())
	if err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

// fileSafe keeps letters, digits, '-', '_' and '.', and replaces the rest
// with '_', so scenario and backend names make portable file names.
func fileSafe(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
