package fence_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/fencerlock/fencer/fence"
)

// A storage service fences its writes with a Guard; the paused holder of
// token 33 is refused once token 34 has been seen.
func ExampleGuard() {
	g := fence.NewGuard(fence.NewMemoryStore())
	ctx := context.Background()

	fmt.Println(g.Check(ctx, "invoices", 33)) // client 1, then it pauses
	fmt.Println(g.Check(ctx, "invoices", 34)) // client 2, after 33's lease expired
	err := g.Check(ctx, "invoices", 33)       // client 1 wakes up
	fmt.Println(errors.Is(err, fence.ErrStale))
	fmt.Println(err)
	// Output:
	// <nil>
	// <nil>
	// true
	// fence: token 33 is stale: resource "invoices" has seen token 34; the lock was granted to someone else since, so stop and acquire it again (a token of at least 34 is accepted)
}

// An HTTP storage service fences every request with Middleware; clients send
// the token of their lease in the Fencing-Token header.
func ExampleMiddleware() {
	var mu sync.Mutex
	files := map[string]string{}
	storage := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		files[r.URL.Path] = string(b)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	guard := fence.NewGuard(fence.NewMemoryStore()) // or fence.OpenFileStore, fencepg.NewStore
	srv := httptest.NewServer(fence.Middleware(guard, nil)(storage))
	defer srv.Close()

	write := func(token, data string) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/file", strings.NewReader(data))
		req.Header.Set(fence.Header, token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(strings.TrimSpace(token + " " + resp.Status + " " + string(body)))
	}
	write("33", "from client 1")
	write("34", "from client 2")
	write("33", "from client 1, late")
	fmt.Println(files["/file"])
	// Output:
	// 33 204 No Content
	// 34 204 No Content
	// 33 409 Conflict fence: token 33 is stale: resource "/file" has seen token 34; the lock was granted to someone else since, so stop and acquire it again (a token of at least 34 is accepted)
	// from client 2
}
