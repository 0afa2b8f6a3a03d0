package clockfile

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of a rate.
const (
	MinRate = 0.01
	MaxRate = 100
)

// MaxOffset bounds an offset either way.
const MaxOffset = 10 * 365 * 24 * time.Hour

// Wildcard is the node ID of the line that applies to every node without
// a line of its own.
const Wildcard = "*"

// rereadEvery is how often a Clock looks at its file at most.
const rereadEvery = time.Millisecond

// Setting is one node's clock: an offset and a rate.
type Setting struct {
	// Offset is added to the time; negative moves the clock back.
	Offset time.Duration
	// Rate is clock seconds per real second; 1 is the real rate.
	Rate float64
}

func (s Setting) validate(node string) error {
	if s.Offset > MaxOffset || s.Offset < -MaxOffset {
		return fmt.Errorf("clockfile: %s: offset %v is out of range; accepted: within ±%v", node, s.Offset, MaxOffset)
	}
	if math.IsNaN(s.Rate) || s.Rate < MinRate || s.Rate > MaxRate {
		return fmt.Errorf("clockfile: %s: rate %v is out of range; accepted: %v to %v (1 is the real rate)", node, s.Rate, MinRate, MaxRate)
	}
	return nil
}

// parse reads a clock file's settings by node ID.
func parse(b []byte) (map[string]Setting, error) {
	out := map[string]Setting{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("clockfile: line %d %q is not NODE OFFSET RATE, e.g. \"n2 20s 1\"", n, line)
		}
		off, err := time.ParseDuration(f[1])
		if err != nil {
			return nil, fmt.Errorf("clockfile: line %d: offset %q is not a Go duration such as 20s or -1.5s", n, f[1])
		}
		rate, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return nil, fmt.Errorf("clockfile: line %d: rate %q is not a number such as 1 or 2.5", n, f[2])
		}
		s := Setting{Offset: off, Rate: rate}
		if err := s.validate(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out[f[0]] = s
	}
	return out, nil
}

func lookup(m map[string]Setting, node string) Setting {
	if s, ok := m[node]; ok {
		return s
	}
	if s, ok := m[Wildcard]; ok {
		return s
	}
	return Setting{Rate: 1}
}

// Clock reads one node's setting from a clock file. It implements
// server.Clock. It is safe for concurrent use and needs no cleanup: it
// starts no goroutine and keeps no file open.
type Clock struct {
	path string
	node string

	mu       sync.Mutex
	cur      Setting
	readAt   time.Time     // real time of the last read of the file
	anchor   time.Time     // real time of the last rate change
	shift    time.Duration // the rate's effect accumulated before anchor
	lastErr  error
	readErrs int
}

// New returns the clock of node (its server node ID) in the file at path.
// The file must exist and parse: a checker that meant to skew a clock and
// gave a wrong path should hear about it at once.
func New(path, node string) (*Clock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clockfile: %w; create it with clockfile.Create (or write \"* 0s 1\" into it)", err)
	}
	m, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	now := time.Now()
	return &Clock{path: path, node: node, cur: lookup(m, node), readAt: now, anchor: now}, nil
}

// Now returns the time on this clock: the real time with the node's
// offset and rate applied. It keeps a monotonic reading.
func (c *Clock) Now() time.Time {
	wall := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall.Sub(c.readAt) >= rereadEvery {
		c.readAt = wall
		c.reread(wall)
	}
	return wall.Add(c.delta(wall))
}

// delta is how far the clock is from the real time at the moment wall. c.mu is held.
func (c *Clock) delta(wall time.Time) time.Duration {
	scaled := time.Duration(float64(wall.Sub(c.anchor)) * (c.cur.Rate - 1))
	return c.shift + scaled + c.cur.Offset
}

// reread reads the file and applies a changed setting. c.mu is held.
func (c *Clock) reread(wall time.Time) {
	b, err := os.ReadFile(c.path)
	var m map[string]Setting
	if err == nil {
		m, err = parse(b)
	}
	if err != nil {
		c.lastErr = err
		c.readErrs++
		return
	}
	next := lookup(m, c.node)
	if next.Rate != c.cur.Rate {
		// Re-anchor, so the rate change does not move the clock.
		c.shift += time.Duration(float64(wall.Sub(c.anchor)) * (c.cur.Rate - 1))
		c.anchor = wall
	}
	c.cur = next
}

// Setting returns the node's current setting, as last read.
func (c *Clock) Setting() Setting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Err returns the last error reading the file, and how many reads failed;
// the Clock kept its previous setting each time.
func (c *Clock) Err() (error, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr, c.readErrs
}

// File writes a clock file. It is safe for concurrent use; the last Set
// wins. It needs no cleanup beyond its directory.
type File struct {
	path string

	mu       sync.Mutex
	settings map[string]Setting
}

// Create creates (or replaces) the clock file at path with every node on
// the real clock ("* 0s 1").
func Create(path string) (*File, error) {
	f := &File{path: path, settings: map[string]Setting{Wildcard: {Rate: 1}}}
	if err := f.write(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Set gives node (or Wildcard) the offset and rate, and rewrites the file
// atomically (write, then rename), so a Clock never reads half a file.
func (f *File) Set(node string, offset time.Duration, rate float64) error {
	if node == "" || strings.ContainsAny(node, " \t\n#") {
		return fmt.Errorf("clockfile: node ID %q is empty or has a blank or '#'; use the server's --node-id, or %q", node, Wildcard)
	}
	s := Setting{Offset: offset, Rate: rate}
	if err := s.validate(node); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settings[node] = s
	return f.write()
}

// Get returns the setting the file gives node.
func (f *File) Get(node string) Setting {
	f.mu.Lock()
	defer f.mu.Unlock()
	return lookup(f.settings, node)
}

// write writes the settings. f.mu is held (or f is not shared yet).
func (f *File) write() error {
	nodes := make([]string, 0, len(f.settings))
	for n := range f.settings {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var b strings.Builder
	b.WriteString("# fencer clock file: NODE OFFSET RATE (see package clockfile)\n")
	for _, n := range nodes {
		s := f.settings[n]
		fmt.Fprintf(&b, "%s %s %s\n", n, s.Offset, strconv.FormatFloat(s.Rate, 'g', -1, 64))
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".clockfile-")
	if err != nil {
		return fmt.Errorf("clockfile: %w", err)
	}
	_, werr := tmp.WriteString(b.String())
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("clockfile: write %s: %w", f.path, err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("clockfile: %w", err)
	}
	return nil
}
