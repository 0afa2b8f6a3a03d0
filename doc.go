// Package fencer is a distributed lock client that is honest about what each
// lock guarantees.
//
// A distributed lock is a lease: it expires. A holder can be paused past its
// lease, a request can be delayed in the network, a clock can jump, and a
// store that replicates asynchronously can forget a grant. So no lock alone
// guarantees mutual exclusion. Locks taken for efficiency (do the work once,
// usually) can live with that. Locks taken for correctness need a fencing
// token: a number that strictly increases with every grant, sent with every
// write, and checked by the storage, which refuses a token lower than one it
// has already seen (see package fence).
//
// A [Client] hands out [Lease]s from one [Backend]:
//
//	c := fencer.New(backend, nil)
//	defer c.Close()
//	lease, err := c.Acquire(ctx, "invoices", &fencer.Options{Require: fencer.Correctness})
//	if err != nil { ... }
//	defer lease.Release(context.Background())
//	err = store.Write(lease.Context(), data, lease.Token())
//
// The Client renews the lease about every TTL/3 and watches its validity on
// the monotonic clock, measured from the moment the last successful request
// was sent: the lease is valid until sent + TTL − drift − a safety margin,
// which ends before the store could have expired it. When that moment passes
// without a successful renewal, or the backend reports the lease gone,
// Done closes and Context is cancelled with a cause wrapping ErrLeaseLost.
//
// Every backend declares a [Guarantee]: redislock and redlock give
// Efficiency; pglock and the fencer server's client give Correctness.
// Options.Require makes Acquire refuse a backend that gives less than the
// code needs.
package fencer
