package history_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fencerlock/fencer/internal/history"
)

// A client records an invocation and its completion in its own file; the
// checker merges every process's file into one history.
func Example() {
	dir, err := os.MkdirTemp("", "history-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	c1, err := history.Create(filepath.Join(dir, "c1.jsonl"), &history.Options{Process: "c1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	op := c1.NextOp()
	err = c1.Record(history.Event{Op: op, Kind: history.WriteInvoke, Lock: "L", Token: 33, Value: "a"})
	// ... the write, refused by the storage ...
	err = errors.Join(err, c1.Record(history.Event{Op: op, Kind: history.WriteRejected, Lock: "L", Token: 33, Err: "token 33 < 34"}))
	if err := errors.Join(err, c1.Close()); err != nil {
		fmt.Println(err)
		return
	}

	events, torn, err := history.Merge(filepath.Join(dir, "c1.jsonl"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		fmt.Printf("%s op=%d %s token=%d err=%q\n", e.Process, e.Op, e.Kind, e.Token, e.Err)
	}
	fmt.Println("torn files:", torn)
	// Output:
	// c1 op=1 write-invoke token=33 err=""
	// c1 op=1 write-rejected token=33 err="token 33 < 34"
	// torn files: 0
}
