package check

import (
	"strings"
	"testing"
	"time"

	"github.com/fencerlock/fencer/internal/check/scenario"
)

func TestPlan(t *testing.T) {
	all, err := Plan(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range scenario.All() {
		n += len(s.Cases)
	}
	if len(all) != n {
		t.Fatalf("Plan(all) has %d runs, the scenarios %d cases", len(all), n)
	}
	if same, _ := Plan([]string{"all"}, nil); len(same) != n {
		t.Errorf("Plan([all]) has %d runs, want %d", len(same), n)
	}
	tests := []struct {
		scenarios, backends []string
		want                []string // scenario/backend
		wantErr             string
	}{
		{scenarios: []string{"pause-33-34"}, backends: []string{"redlock"}, want: []string{"pause-33-34/redlock"}},
		{scenarios: []string{"redlock-restart"}, backends: []string{"redlock"}, want: []string{"redlock-restart/redlock", "redlock-restart/redlock-aof"}},
		{scenarios: []string{"redlock-restart"}, backends: []string{"redlock-aof"}, want: []string{"redlock-restart/redlock-aof"}},
		{scenarios: []string{"lock-value", "validity"}, backends: []string{"redis"}, want: []string{"validity/redis", "lock-value/naive-redis", "lock-value/redis"}},
		{scenarios: []string{"nope"}, wantErr: `no scenario "nope"`},
		{backends: []string{"etcd"}, wantErr: `unknown backend "etcd"; accepted: fencer, fencer-unfenced, naive-redis, postgres, redis, redlock, redlock-aof`},
		{scenarios: []string{"leader-crash"}, backends: []string{"redlock"}, wantErr: "no scenario leader-crash runs against backend redlock"},
	}
	for _, tt := range tests {
		got, err := Plan(tt.scenarios, tt.backends)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Plan(%v, %v) = %v, want an error containing %q", tt.scenarios, tt.backends, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Plan(%v, %v): %v", tt.scenarios, tt.backends, err)
			continue
		}
		var names []string
		for _, p := range got {
			names = append(names, p.Scenario.Name+"/"+p.Case.Backend)
		}
		if strings.Join(names, " ") != strings.Join(tt.want, " ") {
			t.Errorf("Plan(%v, %v) = %v, want %v", tt.scenarios, tt.backends, names, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Options{Binary: "/bin/true", Dir: "/tmp"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{
		{Dir: "/tmp"},
		{Binary: "/bin/true"},
		{Binary: "/bin/true", Dir: "/tmp", Duration: 500 * time.Millisecond},
		{Binary: "/bin/true", Dir: "/tmp", Duration: 25 * time.Hour},
		{Binary: "/bin/true", Dir: "/tmp", Duration: -time.Second},
		{Binary: "/bin/true", Dir: "/tmp", RunTimeout: -time.Second},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted it", o)
		}
	}
}

func TestRunSeed(t *testing.T) {
	if RunSeed(1, "soak", "fencer") != RunSeed(1, "soak", "fencer") {
		t.Fatal("RunSeed is not a function of its arguments")
	}
	if RunSeed(1, "soak", "fencer") == RunSeed(2, "soak", "fencer") || RunSeed(1, "soak", "fencer") == RunSeed(1, "kill-all", "fencer") {
		t.Fatal("RunSeed ignores an argument")
	}
}
