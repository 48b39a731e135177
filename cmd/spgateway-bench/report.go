package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Result is one scenario's figures in one round.
type Result struct {
	Scenario      string                `json:"scenario"`
	Connections   int                   `json:"connections"`
	Seconds       float64               `json:"seconds"`
	Requests      int                   `json:"requests"`
	Throughput    float64               `json:"throughput_rps"`
	Latency       Latency               `json:"latency_ms"`
	Status        Counts                `json:"status"`
	Errors        int                   `json:"errors"`
	FirstError    string                `json:"first_error,omitempty"`
	Kinds         map[string]KindResult `json:"kinds,omitempty"`           // mixed: each kind of request
	PollPageTasks float64               `json:"poll_page_tasks,omitempty"` // mean Tasks (match) per poll page
	StoppedEarly  bool                  `json:"stopped_early,omitempty"`   // update: no Tasks left
	PeakRSSMB     float64               `json:"peak_rss_mb,omitempty"`     // the gateway's VmHWM after the scenario
}

// KindResult is the share of one kind of request in a mixed run.
type KindResult struct {
	Requests int     `json:"requests"`
	Latency  Latency `json:"latency_ms"`
}

// Ratios are the gateway's rates over the baselines' in the same round.
type Ratios struct {
	Intake float64 `json:"intake_vs_baseline_intake,omitempty"`
	Poll   float64 `json:"poll_vs_baseline_hello,omitempty"`
}

// Round is one pass over the scenarios.
type Round struct {
	Results []*Result `json:"results"`
	Ratios  Ratios    `json:"ratios"`
}

// Target is one of issue 7's targets and whether the run met it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Report is the whole run. Summary holds the median of each figure over
// the rounds (the round itself when there is one).
type Report struct {
	URL         string   `json:"url"`
	Connections int      `json:"connections"`
	Rounds      []Round  `json:"rounds"`
	Summary     Round    `json:"summary"`
	Targets     []Target `json:"targets"`
	Errors      int      `json:"errors"`
}

// ratios compares the scenarios of a round with their baselines.
func ratios(results []*Result) Ratios {
	by := map[string]*Result{}
	for _, r := range results {
		by[r.Scenario] = r
	}
	div := func(a, b string) float64 {
		if by[a] == nil || by[b] == nil || by[b].Throughput == 0 {
			return 0
		}
		return by[a].Throughput / by[b].Throughput
	}
	return Ratios{Intake: div("intake", "baseline-intake"), Poll: div("poll", "baseline-hello")}
}

// summarise takes the median of each figure over the rounds; counts are
// summed and the peak RSS is the highest seen.
func summariseRounds(rounds []Round) Round {
	if len(rounds) == 1 {
		return rounds[0]
	}
	var out Round
	for i, first := range rounds[0].Results {
		s := &Result{Scenario: first.Scenario, Connections: first.Connections, PollPageTasks: first.PollPageTasks}
		col := func(f func(*Result) float64) float64 {
			var xs []float64
			for _, rd := range rounds {
				xs = append(xs, f(rd.Results[i]))
			}
			return median(xs)
		}
		s.Seconds = col(func(r *Result) float64 { return r.Seconds })
		s.Throughput = col(func(r *Result) float64 { return r.Throughput })
		s.Latency = Latency{
			P50: col(func(r *Result) float64 { return r.Latency.P50 }),
			P90: col(func(r *Result) float64 { return r.Latency.P90 }),
			P99: col(func(r *Result) float64 { return r.Latency.P99 }),
			Max: col(func(r *Result) float64 { return r.Latency.Max }),
		}
		for _, rd := range rounds {
			r := rd.Results[i]
			s.Requests += r.Requests
			s.Status.add(r.Status)
			s.Errors += r.Errors
			s.StoppedEarly = s.StoppedEarly || r.StoppedEarly
			s.PeakRSSMB = max(s.PeakRSSMB, r.PeakRSSMB)
			if s.FirstError == "" {
				s.FirstError = r.FirstError
			}
		}
		out.Results = append(out.Results, s)
	}
	var intake, poll []float64
	for _, rd := range rounds {
		intake = append(intake, rd.Ratios.Intake)
		poll = append(poll, rd.Ratios.Poll)
	}
	out.Ratios = Ratios{Intake: median(intake), Poll: median(poll)}
	return out
}

// Issue 7's targets.
const (
	targetIntakeRatio = 0.5
	targetPollRatio   = 0.3
	targetP99ms       = 50
	targetRSSMB       = 150
)

// targets checks the summary against issue 7's targets, for the figures
// the run has.
func targets(s Round) []Target {
	var out []Target
	if s.Ratios.Intake > 0 {
		out = append(out, Target{"intake rate", fmt.Sprintf("≥ %.1f× baseline-intake", targetIntakeRatio),
			fmt.Sprintf("%.3f×", s.Ratios.Intake), s.Ratios.Intake >= targetIntakeRatio})
	}
	if s.Ratios.Poll > 0 {
		out = append(out, Target{"poll rate", fmt.Sprintf("≥ %.1f× baseline-hello", targetPollRatio),
			fmt.Sprintf("%.3f×", s.Ratios.Poll), s.Ratios.Poll >= targetPollRatio})
	}
	peak := 0.0
	for _, r := range s.Results {
		peak = max(peak, r.PeakRSSMB)
		if strings.HasPrefix(r.Scenario, "baseline-") {
			continue
		}
		out = append(out, Target{r.Scenario + " p99", fmt.Sprintf("< %d ms", targetP99ms),
			fmt.Sprintf("%.1f ms", r.Latency.P99), r.Latency.P99 < targetP99ms})
	}
	if peak > 0 {
		out = append(out, Target{"gateway peak RSS", fmt.Sprintf("< %d MB", targetRSSMB),
			fmt.Sprintf("%.0f MB", peak), peak < targetRSSMB})
	}
	return out
}

// printText writes the report for people.
func printText(w io.Writer, rep *Report) {
	for i, rd := range rep.Rounds {
		if len(rep.Rounds) > 1 {
			fmt.Fprintf(w, "round %d of %d\n", i+1, len(rep.Rounds))
		}
		printRound(w, rd)
	}
	if len(rep.Rounds) > 1 {
		fmt.Fprintf(w, "median of %d rounds (counts summed)\n", len(rep.Rounds))
		printRound(w, rep.Summary)
	}
	if len(rep.Targets) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target\twant\tgot\t")
		for _, t := range rep.Targets {
			verdict := "met"
			if !t.Met {
				verdict = "MISSED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Want, t.Got, verdict)
		}
		tw.Flush()
	}
}

func printRound(w io.Writer, rd Round) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\trequests\t2xx\t412\t4xx\t5xx\ttransport\tRSS MB\t")
	for _, r := range rd.Results {
		rss := "-"
		if r.PeakRSSMB > 0 {
			rss = strconv.FormatFloat(r.PeakRSSMB, 'f', 0, 64)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", r.Scenario, r.Throughput,
			r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Requests,
			r.Status.OK, r.Status.Conflict412, r.Status.Client4xx, r.Status.Server5xx, r.Status.Transport, rss)
	}
	tw.Flush()
	for _, r := range rd.Results {
		var notes []string
		if r.PollPageTasks > 0 {
			notes = append(notes, fmt.Sprintf("%.1f Tasks a poll page", r.PollPageTasks))
		}
		kinds := make([]string, 0, len(r.Kinds))
		for k := range r.Kinds {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			kr := r.Kinds[k]
			notes = append(notes, fmt.Sprintf("%s %d requests p99 %.2f ms", k, kr.Requests, kr.Latency.P99))
		}
		if r.StoppedEarly {
			notes = append(notes, "stopped early: no Tasks left to update (raise -seed)")
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", r.Scenario, strings.Join(notes, "; "))
		}
	}
	if rd.Ratios.Intake > 0 || rd.Ratios.Poll > 0 {
		fmt.Fprintf(w, "  ratios: intake/baseline-intake %.3f×, poll/baseline-hello %.3f×\n", rd.Ratios.Intake, rd.Ratios.Poll)
	}
}

// peakRSS reads a process's peak resident set size (VmHWM) in MB from
// /proc (Linux only).
func peakRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
		if err != nil {
			return 0, fmt.Errorf("peak RSS: %q: %w", rest, err)
		}
		return kb / 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	return 0, fmt.Errorf("peak RSS: no VmHWM for process %d", pid)
}
