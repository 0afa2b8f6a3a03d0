package main

import (
	"context"
	"strings"
	"testing"

	"github.com/fencerlock/fencer/internal/check/scenario"
)

// checkRun runs the fencer command in-process and returns its exit status,
// stdout and stderr.
func checkRun(args ...string) (int, string, string) {
	var out, errOut strings.Builder
	env := &environment{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code := dispatch(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func TestCheckUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "--scenario", "nope"}, `no scenario "nope"; the scenarios are pause-33-34`},
		{[]string{"check", "--backend", "etcd"}, `unknown backend "etcd"; accepted: fencer, fencer-unfenced`},
		{[]string{"check", "--scenario", "soak", "--backend", "redis"}, "no scenario soak runs against backend redis"},
		{[]string{"check", "--duration", "10ms"}, "--duration 10ms is out of range; accepted: 1s to 24h0m0s"},
		{[]string{"check", "--duration", "48h"}, "out of range"},
		{[]string{"check", "--seed", "-1"}, `--seed "-1" is not a number`},
		{[]string{"check", "--seed", "x"}, "is not a number"},
		{[]string{"check", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"check", "soak"}, `unexpected argument "soak"`},
		{[]string{"check-worker", "--name", "c1"}, "no history file"},
	} {
		code, _, stderr := checkRun(tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: stderr %q does not say %q", tc.args, stderr, tc.want)
		}
	}
}

func TestCheckList(t *testing.T) {
	code, out, stderr := checkRun("check", "--list")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, s := range scenario.All() {
		if !strings.Contains(out, s.Name) {
			t.Errorf("--list lacks %s", s.Name)
		}
		for _, c := range s.Cases {
			if !strings.Contains(out, "expected "+c.Expectation()+": "+c.Why) {
				t.Errorf("--list lacks %s × %s's expectation", s.Name, c.Backend)
			}
		}
	}
	code, out, _ = checkRun("check", "--list", "--backend", "redlock-aof")
	if code != exitOK || !strings.Contains(out, "redlock-restart") || strings.Contains(out, "pause-33-34") {
		t.Errorf("--list --backend redlock-aof: exit %d:\n%s", code, out)
	}
}

func TestHiddenCommandsAndFlags(t *testing.T) {
	_, out, _ := checkRun("help")
	if !strings.Contains(out, "check ") || strings.Contains(out, "check-worker") {
		t.Errorf("help should list check and hide check-worker:\n%s", out)
	}
	_, _, stderr := checkRun("server", "--help")
	if strings.Contains(stderr, "clock-file") || !strings.Contains(stderr, "-node-id") {
		t.Errorf("server --help should hide --clock-file:\n%s", stderr)
	}
	code, _, stderr := checkRun("server", "--clock-file", "/nonexistent/clock", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--raft-listen", "127.0.0.1:0")
	if code != exitUsage || !strings.Contains(stderr, "--clock-file") {
		t.Errorf("server with a missing clock file: exit %d: %s", code, stderr)
	}
}
