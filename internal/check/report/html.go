package report

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/fencerlock/fencer/internal/check/analyze"
	"github.com/fencerlock/fencer/internal/history"
)

// MaxFindingsShown bounds the findings the HTML report shows per check;
// the rest are counted ("and 12 more"). The counts in the summary are
// always complete.
const MaxFindingsShown = 50

// HTMLOptions configure WriteHTML. The zero value (or nil) gives a report
// titled "fencer check" without links to porcupine visualizations.
type HTMLOptions struct {
	// Title is the page's title; empty means "fencer check".
	Title string
	// VisualizationLink returns the link (a relative path) to porcupine's
	// visualization of the named check ("store" or "lock") of the i-th
	// analysis, or "" when there is none. Nil means no links.
	VisualizationLink func(i int, check string) string
}

// WriteHTML writes the HTML report of the analyses: one self-contained
// page (inline CSS and SVG, no scripts, no external assets) with a summary
// table and, per run, the verdict, each check's result, a timeline per
// lock and the evidence. It returns the first write error.
func WriteHTML(w io.Writer, analyses []*analyze.Analysis, opts *HTMLOptions) error {
	var o HTMLOptions
	if opts != nil {
		o = *opts
	}
	if o.Title == "" {
		o.Title = "fencer check"
	}
	tmpl, err := template.New("report").Parse(pageTemplate)
	if err != nil {
		return fmt.Errorf("report: parse the HTML template: %w", err) // a bug in this package
	}
	page := pageView{Title: o.Title}
	for i, a := range analyses {
		rv := buildRun(i, a, o.VisualizationLink)
		page.Runs = append(page.Runs, rv)
		if a.Result.Verdict == analyze.VerdictPass {
			page.Pass++
		} else {
			page.Fail++
		}
	}
	if err := tmpl.Execute(w, page); err != nil {
		return fmt.Errorf("report: write the HTML report: %w", err)
	}
	return nil
}

type pageView struct {
	Title      string
	Runs       []runView
	Pass, Fail int
}

type runView struct {
	Anchor                                              string
	Scenario, Backend, Expected, Why, Observed, Verdict string
	VerdictClass                                        string
	Duration                                            string
	Reasons                                             []string
	Checks                                              []checkRow
	Links                                               []linkView
	Timelines                                           []timelineView
	Findings                                            []findingGroup
}

type checkRow struct {
	Name, Result, Class string
}

type linkView struct {
	Label string
	Href  string
}

type findingGroup struct {
	Check string
	Items []findingView
	More  int
}

type findingView struct {
	Kind, Class, Summary string
	Events               []eventRow
	Entries              []entryRow
}

type eventRow struct {
	Time, Process, Op, Kind, Lock, Token, Value, Err, Attrs string
}

type entryRow struct {
	Seq, Op, Key, Token, Accepted, Floor string
}

func buildRun(i int, a *analyze.Analysis, link func(int, string) string) runView {
	r := a.Result
	rv := runView{
		Anchor:   fmt.Sprintf("run-%d", i+1),
		Scenario: r.Scenario, Backend: r.Backend, Expected: string(r.Expected), Why: r.Why,
		Observed: r.Observed, Verdict: string(r.Verdict), VerdictClass: string(r.Verdict),
		Duration: fmt.Sprintf("%.1fms", float64(a.End-a.Start)/1e6),
		Reasons:  r.Reasons,
	}
	rv.Checks = checkRows(a)
	if link != nil {
		for _, c := range []*analyze.LinearCheck{&a.Linearizability.Store, &a.Linearizability.Lock} {
			if href := link(i, c.Name); href != "" && c.CanVisualize() {
				rv.Links = append(rv.Links, linkView{Label: fmt.Sprintf("porcupine: %s (%s)", c.Name, c.Status), Href: href})
			}
		}
	}
	rv.Timelines = timelines(a)
	groups := []struct {
		name string
		fs   []analyze.Finding
	}{
		{"overlapping holders", a.Holders.Findings},
		{"lost updates", a.Updates.Findings},
		{"tokens", a.Tokens.Findings},
		{"store", a.Store.Findings},
		{"linearizability: store", a.Linearizability.Store.Findings},
		{"linearizability: lock", a.Linearizability.Lock.Findings},
		{"replicas", a.Replicas.Findings},
	}
	for _, g := range groups {
		if len(g.fs) == 0 {
			continue
		}
		fg := findingGroup{Check: g.name}
		for j, f := range g.fs {
			if j == MaxFindingsShown {
				fg.More = len(g.fs) - j
				break
			}
			fg.Items = append(fg.Items, findingRow(a, f))
		}
		rv.Findings = append(rv.Findings, fg)
	}
	return rv
}

func checkRows(a *analyze.Analysis) []checkRow {
	bad := func(b bool) string {
		if b {
			return "bad"
		}
		return "ok"
	}
	var rows []checkRow
	h := a.Holders
	rows = append(rows, checkRow{"overlapping holders",
		fmt.Sprintf("%d observed, %d believed (%d windows)", h.Observed, h.Believed, len(h.Windows)), bad(h.Believed > 0)})
	u := a.Updates
	res := fmt.Sprintf("%d acknowledged writes, %d lost", u.Acknowledged, u.Lost)
	if len(u.LostValues) > 0 {
		var parts []string
		keys := make([]string, 0, len(u.LostValues))
		for k := range u.LostValues {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %s", k, strings.Join(u.LostValues[k], ", ")))
		}
		res += " (" + strings.Join(parts, "; ") + ")"
	}
	if len(u.Unchecked) > 0 {
		res += "; not checked: " + strings.Join(u.Unchecked, ", ")
	}
	rows = append(rows, checkRow{"lost updates (" + string(u.Workload) + ")", res, bad(u.Lost > 0)})
	t := a.Tokens
	if t.NoTokens {
		rows = append(rows, checkRow{"tokens", "no tokens: not checked", "note"})
	} else {
		rows = append(rows, checkRow{"tokens (" + string(t.Scope) + ")",
			fmt.Sprintf("%d grants, %d regressions, %d duplicates", t.Grants, t.Regressions, t.Duplicates), bad(t.Violations() > 0)})
	}
	s := a.Store
	src := "from the clients' view (no accept log)"
	if s.FromLog {
		src = fmt.Sprintf("from the accept log (%d entries)", s.Entries)
	}
	res = fmt.Sprintf("%d stale accepted, %d stale rejected, %s", s.StaleAccepted, s.StaleRejected, src)
	if s.Mismatches > 0 {
		res += fmt.Sprintf("; %d client/log disagreements", s.Mismatches)
	}
	if s.WrongRefusals > 0 {
		res += fmt.Sprintf("; %d refusals of tokens that were not stale", s.WrongRefusals)
	}
	rows = append(rows, checkRow{"store", res, bad(s.StaleAccepted > 0)})
	for _, c := range []*analyze.LinearCheck{&a.Linearizability.Store, &a.Linearizability.Lock} {
		res := string(c.Status)
		if c.Status != analyze.CheckSkipped {
			res = fmt.Sprintf("%s: %d operations (%d open-ended) in %d partitions; model: %s", c.Status, c.Operations, c.Open, len(c.Partitions), c.Model)
		}
		class := "ok"
		switch c.Status {
		case analyze.CheckIllegal:
			class = "bad"
		case analyze.CheckTimeout, analyze.CheckSkipped:
			class = "note"
		}
		rows = append(rows, checkRow{"linearizability: " + c.Name, res, class})
	}
	rp := a.Replicas
	switch {
	case rp.Agree == nil:
		rows = append(rows, checkRow{"replicas", "no replicas", "note"})
	case *rp.Agree:
		rows = append(rows, checkRow{"replicas", fmt.Sprintf("%d nodes agree: applied index %d, hash %s", rp.Nodes, rp.AppliedIndex, rp.Hash), "ok"})
	default:
		rows = append(rows, checkRow{"replicas", fmt.Sprintf("%d of %d nodes differ: %s", len(rp.Differ), rp.Nodes, strings.Join(rp.Differ, ", ")), "bad"})
	}
	return rows
}

func findingRow(a *analyze.Analysis, f analyze.Finding) findingView {
	fv := findingView{Kind: string(f.Kind), Class: findingClass(f.Kind), Summary: f.Summary}
	for _, e := range f.Events {
		fv.Events = append(fv.Events, eventRowOf(a.Start, e))
	}
	for _, e := range f.Entries {
		acc := "refused"
		if e.Accepted {
			acc = "accepted"
		}
		fv.Entries = append(fv.Entries, entryRow{Seq: strconv.FormatUint(e.Seq, 10), Op: e.Op, Key: e.Key,
			Token: e.Token.String(), Accepted: acc, Floor: e.Floor.String()})
	}
	return fv
}

func findingClass(k analyze.FindingKind) string {
	switch k {
	case analyze.FindingBelievedOverlap, analyze.FindingLostUpdate, analyze.FindingTokenDuplicate, analyze.FindingTokenRegression,
		analyze.FindingStaleAccepted, analyze.FindingNotLinearizable, analyze.FindingReplicaDiffers:
		return "bad"
	case analyze.FindingStaleRejected:
		return "ok"
	}
	return "note"
}

func eventRowOf(origin history.Time, e history.Event) eventRow {
	r := eventRow{Time: fmt.Sprintf("%.3f", float64(e.Time-origin)/1e6), Process: e.Process, Kind: string(e.Kind),
		Lock: e.Lock, Value: e.Value, Err: e.Err}
	if e.Op != 0 {
		r.Op = strconv.FormatUint(e.Op, 10)
	}
	if e.Token != 0 {
		r.Token = strconv.FormatUint(e.Token, 10)
	}
	if len(e.Attrs) > 0 {
		keys := make([]string, 0, len(e.Attrs))
		for k := range e.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			v := e.Attrs[k]
			if k == analyze.AttrValidUntil {
				if t, err := strconv.ParseInt(v, 10, 64); err == nil {
					v = fmt.Sprintf("%.3fms", float64(history.Time(t)-origin)/1e6)
				}
			}
			parts[i] = k + "=" + v
		}
		r.Attrs = strings.Join(parts, " ")
	}
	return r
}

const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-top: 1px solid #ccc; padding-top: 1em; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin: 0.4em 0; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
tr.bad td:first-child, span.bad { border-left: 4px solid #cf222e; }
tr.ok td:first-child, span.ok { border-left: 4px solid #1a7f37; }
tr.note td:first-child, span.note { border-left: 4px solid #999; }
span.kind { padding-left: 4px; font-family: monospace; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
table.events td { font-family: monospace; font-size: 12px; }
.legend span { display: inline-block; margin-right: 1.2em; }
.sw { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; }
svg.timeline { display: block; margin: 0.3em 0 1em; font: 11px sans-serif; }
svg .lane-label { font-family: monospace; font-size: 12px; }
svg .lane-line { stroke: #e4e4e4; }
svg .axis { stroke: #555; }
svg .observed { fill: #c6dbef; stroke: #6baed6; stroke-width: 0.5; }
svg .believed { fill: #2171b5; }
svg .pause { fill: #bbb; fill-opacity: 0.55; stroke: #777; stroke-dasharray: 3 2; }
svg .band.fault { fill: #fdae6b; fill-opacity: 0.25; stroke: #e6550d; stroke-opacity: 0.5; }
svg .band.pause { fill: #bbb; fill-opacity: 0.3; stroke: #777; stroke-dasharray: 3 2; }
svg .band-label { fill: #a63603; font-size: 10px; }
svg .token-label { fill: #08519c; font-size: 9px; }
svg .write { stroke: #222; stroke-width: 0.6; }
svg .write.accepted { fill: #2ca02c; }
svg .write.rejected { fill: #ff7f0e; }
svg .write.stale-accepted { fill: #d62728; stroke-width: 1.5; }
svg .write.unknown { fill: #fff; }
svg .write.failed { fill: #999; }
svg .lease-lost { stroke: #000; stroke-width: 2; fill: none; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{len .Runs}} runs: <span class="pass">{{.Pass}} passed</span>, <span class="fail">{{.Fail}} failed</span>.</p>
<table class="summary">
<tr><th>scenario</th><th>backend</th><th>expected</th><th>observed</th><th>verdict</th></tr>
{{range .Runs}}<tr><td><a href="#{{.Anchor}}">{{.Scenario}}</a></td><td>{{.Backend}}</td><td>{{.Expected}}</td><td>{{.Observed}}</td><td class="{{.VerdictClass}}">{{.Verdict}}</td></tr>
{{end}}</table>
<p class="legend">Timelines:
<span><span class="sw" style="background:#c6dbef;border:1px solid #6baed6"></span>held (as observed: until release, lease-lost or kill)</span>
<span><span class="sw" style="background:#2171b5"></span>held (as the holder believed: until its valid_until)</span>
<span><span class="sw" style="background:#bbb;border:1px dashed #777"></span>paused</span>
<span><span class="sw" style="background:#fdae6b"></span>fault</span>
<span><span class="sw" style="background:#2ca02c;border-radius:5px"></span>write accepted</span>
<span><span class="sw" style="background:#ff7f0e;border-radius:5px"></span>stale write rejected</span>
<span><span class="sw" style="background:#d62728;border-radius:5px"></span>stale write accepted</span>
<span><span class="sw" style="background:#fff;border:1px solid #222;border-radius:5px"></span>write outcome unknown</span>
<span>&#x2715; lease lost</span>
</p>
{{range .Runs}}
<section id="{{.Anchor}}">
<h2>{{.Scenario}} &middot; {{.Backend}} &mdash; <span class="{{.VerdictClass}}">{{.Verdict}}</span></h2>
<p><b>Expected:</b> {{.Expected}}{{if .Why}} &mdash; {{.Why}}{{end}}<br />
<b>Observed:</b> {{.Observed}} <small>(history of {{.Duration}})</small></p>
<ul class="reasons">{{range .Reasons}}<li>{{.}}</li>{{end}}</ul>
<table class="checks">
<tr><th>check</th><th>result</th></tr>
{{range .Checks}}<tr class="{{.Class}}"><td>{{.Name}}</td><td>{{.Result}}</td></tr>
{{end}}</table>
{{if .Links}}<p>{{range .Links}}<a href="{{.Href}}">{{.Label}}</a> {{end}}</p>{{end}}
{{range .Timelines}}
<h3>Timeline of lock {{.Lock}}</h3>
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img">
{{range .Lanes}}<line class="lane-line" x1="{{.LineX1}}" y1="{{.LineY}}" x2="{{.X2}}" y2="{{.LineY}}" />
<text class="lane-label" x="4" y="{{.TextY}}">{{.Label}}</text>
{{end}}{{range .Bands}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
<text class="band-label" x="{{.LabelX}}" y="{{.LabelY}}">{{.Label}}</text>
{{end}}{{range .Shapes}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{if .Label}}<text class="token-label" x="{{.LabelX}}" y="{{.LabelY}}">{{.Label}}</text>
{{end}}{{end}}{{range .Pauses}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Marks}}{{if .Cross}}<path class="{{.Class}}" d="{{.Path}}"><title>{{.Title}}</title></path>
{{else}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{.Y}}" r="{{.Radius}}"><title>{{.Title}}</title></circle>
{{end}}{{end}}<line class="axis" x1="{{.PlotX}}" y1="{{.AxisY}}" x2="{{.PlotX2}}" y2="{{.AxisY}}" />
{{range .Ticks}}<line class="axis" x1="{{.X}}" y1="{{.Y1}}" x2="{{.X}}" y2="{{.Y2}}" />
<text x="{{.X}}" y="{{.TextY}}" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>
{{end}}
{{if .Findings}}<h3>Evidence</h3>
{{range .Findings}}<h4>{{.Check}}</h4>
{{range .Items}}<details><summary><span class="{{.Class}} kind">{{.Kind}}</span> {{.Summary}}</summary>
{{if .Events}}<table class="events">
<tr><th>ms</th><th>process</th><th>op</th><th>kind</th><th>lock</th><th>token</th><th>value</th><th>error</th><th>attrs</th></tr>
{{range .Events}}<tr><td class="num">{{.Time}}</td><td>{{.Process}}</td><td class="num">{{.Op}}</td><td>{{.Kind}}</td><td>{{.Lock}}</td><td class="num">{{.Token}}</td><td>{{.Value}}</td><td>{{.Err}}</td><td>{{.Attrs}}</td></tr>
{{end}}</table>{{end}}
{{if .Entries}}<table class="events">
<tr><th>seq</th><th>op</th><th>key</th><th>token</th><th>decision</th><th>floor</th></tr>
{{range .Entries}}<tr><td class="num">{{.Seq}}</td><td>{{.Op}}</td><td>{{.Key}}</td><td class="num">{{.Token}}</td><td>{{.Accepted}}</td><td class="num">{{.Floor}}</td></tr>
{{end}}</table>{{end}}
</details>
{{end}}{{if .More}}<p>&hellip; and {{.More}} more.</p>{{end}}
{{end}}{{end}}
</section>
{{end}}
</body>
</html>
`
