// Package netproxy puts a fault-injecting TCP proxy on a network link, so a
// checker can delay, cut, reset and hold the traffic between real processes
// on one machine, without root and without netem.
//
// A [Proxy] listens on a loopback port and forwards every connection it
// accepts to one target address. What it does to the traffic is a [Fault],
// which [Proxy.Set] replaces at any time, and which takes effect at once on
// the connections already open. A Fault says, for each direction (Up: from
// the client to the target, Down: back), whether bytes pass, are delayed
// ([ModeDelay]), are lost ([ModeBlackhole]) or are held back until the fault
// ends ([ModeHold]); and whether new connections are accepted, left hanging
// ([ConnsDrop]) or reset ([ConnsReset], which also resets the open ones).
//
// A [Partition] builds one proxy for every ordered pair of nodes, so that
// node a reaches node b only through the proxy of the link a→b, and cuts
// any groups apart with [Partition.Split], [Partition.Isolate] and
// [Partition.Heal]. Every operation is a plain call taking plain data, so a
// seeded fault schedule can drive it.
//
// # What the faults look like to the processes
//
// The proxy never delivers a stream with a hole: TCP would not. Bytes are
// either delivered in order, late, or the connection fails:
//
//   - Delay: every chunk read is written no earlier than read time + Delay +
//     a random jitter below Jitter, and never before the chunk read before
//     it. Latency goes up; order and content stay.
//   - Blackhole: bytes are read and thrown away, nothing is forwarded, FIN
//     included; the connection hangs, like a partition that drops packets
//     without RST. Chunks still waiting in a delay are lost too. When the
//     direction heals, a connection that lost bytes is reset (both sides get
//     RST), as a real TCP connection cut for long would eventually be; one
//     that lost nothing carries on.
//   - Hold: bytes are read and kept, in order, until the direction leaves
//     Hold, then delivered: a request delayed in the network, arriving long
//     after its sender gave up. [Proxy.Stats] tells how many bytes are held.
//   - ConnsDrop: new connections are accepted by the kernel (the client's
//     connect succeeds; a proxy in user space cannot stop that) and then
//     parked without a connection to the target; when new connections are
//     accepted again, the parked ones are connected and forwarded, like a
//     SYN retransmitted after a partition heals.
//   - ConnsReset: open connections are reset on both sides at once, and new
//     ones are reset as soon as they are accepted. A client sees ECONNRESET,
//     not ECONNREFUSED, and cannot tell whether a request it had sent
//     arrived: the checker must treat it as unknown.
//
// Buffers are bounded ([Options.MaxBuffered] per direction of each
// connection); when one is full the proxy stops reading, so the sender's
// kernel buffers fill and its writes block, as on a congested link.
//
// # Goroutines
//
// A Proxy owns every goroutine it starts: one accepting, and per connection
// one dialling the target, then a reader and a writer for each direction.
// [Proxy.Close] resets every connection, stops those goroutines and waits
// for them.
package netproxy
