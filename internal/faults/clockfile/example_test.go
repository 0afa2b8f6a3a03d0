package clockfile_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fencerlock/fencer/internal/faults/clockfile"
)

// A checker jumps one node's clock; the node's server reads it through its
// Clock.
func Example() {
	dir, _ := os.MkdirTemp("", "clockfile-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "clock")

	f, err := clockfile.Create(path) // every node on the real clock
	if err != nil {
		fmt.Println(err)
		return
	}
	clock, err := clockfile.New(path, "n2") // what `fencer server --node-id n2 --clock-file PATH` does
	if err != nil {
		fmt.Println(err)
		return
	}
	f.Set("n2", time.Minute, 1) // n2's clock jumps a minute ahead
	time.Sleep(5 * time.Millisecond)
	ahead := clock.Now().Sub(time.Now()).Round(time.Second)
	fmt.Println("n2 is ahead by", ahead)
	// Output: n2 is ahead by 1m0s
}
