package netproxy

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// benchTargets runs a benchmark against the target directly and through a
// healthy proxy, so the two can be read side by side.
func benchTargets(b *testing.B, target *server, run func(b *testing.B, addr string)) {
	b.Run("direct", func(b *testing.B) { run(b, target.addr()) })
	b.Run("proxy", func(b *testing.B) {
		p := newProxy(b, target.addr(), nil)
		run(b, p.Addr())
	})
}

// BenchmarkRoundTrip is the latency of a one-byte request and reply.
func BenchmarkRoundTrip(b *testing.B) {
	echo := startEcho(b)
	benchTargets(b, echo, func(b *testing.B, addr string) {
		c := dial(b, addr)
		buf := []byte{'x'}
		for b.Loop() {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkThroughput streams 64 KiB writes to a server that counts them.
func BenchmarkThroughput(b *testing.B) {
	sink := startServer(b, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		_ = binary.Write(c, binary.BigEndian, n)
	})
	benchTargets(b, sink, func(b *testing.B, addr string) {
		c := dial(b, addr)
		buf := make([]byte, 64<<10)
		b.SetBytes(int64(len(buf)))
		var sent int64
		for b.Loop() {
			n, err := c.Write(buf)
			if err != nil {
				b.Fatal(err)
			}
			sent += int64(n)
		}
		if err := c.CloseWrite(); err != nil {
			b.Fatal(err)
		}
		var got int64
		if err := binary.Read(c, binary.BigEndian, &got); err != nil || got != sent {
			b.Fatalf("server counted %d bytes (%v); sent %d", got, err, sent)
		}
	})
}
