package report

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/history"
)

// Timeline geometry, in SVG user units (pixels at 100%).
const (
	tlLabelW = 90  // lane labels on the left
	tlPlotW  = 900 // the time axis
	tlRightW = 20
	tlTopH   = 22 // fault labels above the lanes
	tlLaneH  = 34
	tlAxisH  = 30
)

// timelineView is one lock's timeline picture, ready for the template.
type timelineView struct {
	Lock          string
	Width, Height int
	Lanes         []laneView
	Bands         []shapeView // faults and non-client pauses, across all lanes
	Shapes        []shapeView // held windows, in lanes
	Pauses        []shapeView // client pauses, in lanes, drawn over the windows
	Marks         []markView  // writes and lease-lost marks
	Ticks         []tickView
	AxisY         string
	PlotX, PlotX2 string
}

type laneView struct {
	Label      string
	Y, TextY   string
	LineY      string
	LineX1, X2 string
}

// shapeView is a rectangle with a CSS class and a tooltip.
type shapeView struct {
	Class      string
	X, Y, W, H string
	Title      string
	Label      string // drawn at LabelX, LabelY when not empty
	LabelX     string
	LabelY     string
}

// markView is a point mark: a circle (writes) or a cross (lease-lost).
type markView struct {
	Class  string
	Cross  bool
	X, Y   string
	Path   string // the cross's path
	Title  string
	Radius string
}

type tickView struct {
	X, Y1, Y2, TextY string
	Label            string
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

// timelines builds one timeline per lock of the analysis.
func timelines(a *analyze.Analysis) []timelineView {
	var out []timelineView
	for _, l := range a.Locks() {
		out = append(out, buildTimeline(a, l))
	}
	return out
}

func buildTimeline(a *analyze.Analysis, lock string) timelineView {
	start, end := a.Start, a.End
	if end <= start {
		end = start + 1
	}
	x := func(t history.Time) float64 {
		t = min(max(t, start), end)
		return tlLabelW + float64(t-start)/float64(end-start)*tlPlotW
	}
	ms := func(t history.Time) string { return fmt.Sprintf("%.1fms", float64(t-start)/1e6) }

	// Lanes: every client process that touched the lock.
	laneOf := map[string]int{}
	var names []string
	addLane := func(p string) {
		if _, ok := laneOf[p]; !ok && p != "" {
			laneOf[p] = -1
			names = append(names, p)
		}
	}
	for i := range a.Operations {
		if o := &a.Operations[i]; o.Lock == lock {
			addLane(o.Process)
		}
	}
	for _, e := range a.Run.History {
		if e.Kind == history.LeaseLost && e.Lock == lock {
			addLane(e.Process)
		}
	}
	sort.Strings(names)
	for i, n := range names {
		laneOf[n] = i
	}
	laneY := func(i int) float64 { return tlTopH + float64(i)*tlLaneH }
	plotH := float64(len(names)) * tlLaneH
	v := timelineView{
		Lock:   lock,
		Width:  tlLabelW + tlPlotW + tlRightW,
		Height: int(tlTopH + plotH + tlAxisH),
		PlotX:  f1(tlLabelW), PlotX2: f1(tlLabelW + tlPlotW),
		AxisY: f1(tlTopH + plotH),
	}
	for i, n := range names {
		y := laneY(i)
		v.Lanes = append(v.Lanes, laneView{Label: n, Y: f1(y), TextY: f1(y + tlLaneH/2 + 4),
			LineY: f1(y + tlLaneH), LineX1: f1(tlLabelW), X2: f1(tlLabelW + tlPlotW)})
	}

	// Faults, and pauses of processes without a lane (server nodes), are
	// bands across the lanes; pauses of clients sit in their lane. A pause
	// of a client of another lock is left to that lock's picture.
	clients := map[string]bool{}
	for i := range a.Operations {
		clients[a.Operations[i].Process] = true
	}
	for _, s := range a.Spans {
		if _, lane := laneOf[s.Process]; s.Kind == analyze.SpanPause && clients[s.Process] && !lane {
			continue
		}
		x1, x2 := x(s.Start), x(s.End)
		w := math.Max(x2-x1, 1.5)
		open := ""
		if s.Open {
			open = " (no end recorded)"
		}
		title := fmt.Sprintf("%s: %s to %s%s", s.Label, ms(s.Start), ms(s.End), open)
		if i, ok := laneOf[s.Process]; ok && s.Kind == analyze.SpanPause {
			v.Pauses = append(v.Pauses, shapeView{Class: "pause", X: f1(x1), Y: f1(laneY(i) + 2), W: f1(w), H: f1(tlLaneH - 4), Title: title})
			continue
		}
		v.Bands = append(v.Bands, shapeView{Class: "band " + string(s.Kind), X: f1(x1), Y: f1(tlTopH), W: f1(w), H: f1(plotH), Title: title,
			Label: s.Label, LabelX: f1(x1 + 2), LabelY: f1(tlTopH - 6)})
	}

	// Held windows: observed (light, full height) under believed (dark,
	// inner).
	for _, w := range a.Holders.Windows {
		i, ok := laneOf[w.Process]
		if w.Lock != lock || !ok {
			continue
		}
		y := laneY(i)
		tok := "no token"
		if w.Token != 0 {
			tok = fmt.Sprintf("token %d", w.Token)
		}
		x1, xo, xb := x(w.Start), x(w.ObservedEnd), x(w.BelievedEnd)
		v.Shapes = append(v.Shapes, shapeView{Class: "observed", X: f1(x1), Y: f1(y + 6), W: f1(math.Max(xo-x1, 1)), H: f1(tlLaneH - 12),
			Title: fmt.Sprintf("%s held %s (%s) from %s; acted as holder until %s (%s)", w.Process, lock, tok, ms(w.Start), ms(w.ObservedEnd), w.ObservedEndBy),
			Label: trimToken(tok), LabelX: f1(x1 + 2), LabelY: f1(y + 5)})
		if w.BelievedEnd > w.Start {
			v.Shapes = append(v.Shapes, shapeView{Class: "believed", X: f1(x1), Y: f1(y + 11), W: f1(math.Max(xb-x1, 1)), H: f1(tlLaneH - 22),
				Title: fmt.Sprintf("%s believed it held %s (%s) from %s until %s (%s)", w.Process, lock, tok, ms(w.Start), ms(w.BelievedEnd), w.BelievedEndBy)})
		}
	}

	// Writes, coloured by what the store did with them.
	for _, w := range a.Store.Writes {
		i, ok := laneOf[w.Process]
		if w.Lock != lock || !ok {
			continue
		}
		t := w.Complete
		if t == 0 {
			t = w.Invoke
		}
		v.Marks = append(v.Marks, markView{Class: "write " + string(w.Class), X: f1(x(t)), Y: f1(laneY(i) + tlLaneH/2), Radius: "4.5",
			Title: fmt.Sprintf("%s wrote %q to %s with token %d at %s: %s", w.Process, w.Value, w.Key, w.Token, ms(t), writeClassText(w.Class))})
	}
	for _, e := range a.Run.History {
		i, ok := laneOf[e.Process]
		if e.Kind != history.LeaseLost || e.Lock != lock || !ok {
			continue
		}
		cx, cy := x(e.Time), laneY(i)+tlLaneH/2
		v.Marks = append(v.Marks, markView{Class: "lease-lost", Cross: true,
			Path:  fmt.Sprintf("M%s %s L%s %s M%s %s L%s %s", f1(cx-5), f1(cy-5), f1(cx+5), f1(cy+5), f1(cx-5), f1(cy+5), f1(cx+5), f1(cy-5)),
			Title: fmt.Sprintf("%s learned its lease on %s was lost at %s", e.Process, lock, ms(e.Time))})
	}

	// The time axis, in ms from the start of the history.
	span := float64(end-start) / 1e6
	step := niceStep(span / 8)
	for k := 0; float64(k)*step <= span*(1+1e-9); k++ {
		t := float64(k) * step
		tx := tlLabelW + t/span*tlPlotW
		v.Ticks = append(v.Ticks, tickView{X: f1(tx), Y1: f1(tlTopH + plotH), Y2: f1(tlTopH + plotH + 5), TextY: f1(tlTopH + plotH + 18),
			Label: trimFloat(t) + "ms"})
	}
	return v
}

func trimToken(s string) string { return strings.TrimPrefix(s, "token ") }

// niceStep returns 1, 2 or 5 times a power of ten, at least raw.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func writeClassText(c analyze.WriteClass) string {
	switch c {
	case analyze.WriteAccepted:
		return "accepted"
	case analyze.WriteStaleAccepted:
		return "STALE, ACCEPTED"
	case analyze.WriteRejected:
		return "stale, rejected (409)"
	case analyze.WriteFailed:
		return "failed"
	}
	return "outcome unknown"
}
