package failpoint_test

import (
	"fmt"

	"github.com/fencerlock/fencer/internal/failpoint"
)

// A worker arms a point once and records each firing before it acts.
func Example() {
	fps, err := failpoint.Parse("before-write=1*sleep(1ms)", &failpoint.Options{
		Names: []string{"after-acquire", "before-write"},
		OnFire: func(name string, a failpoint.Action) {
			fmt.Println("firing", name, a.Kind)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		fps.Eval("after-acquire") // not armed: nothing happens
		fps.Eval("before-write")  // fires the first time only
	}
	fmt.Println("fired", fps.Fired("before-write"), "time(s)")
	// Output:
	// firing before-write sleep
	// fired 1 time(s)
}
