package netproxy

import (
	"fmt"
	"time"
)

// Dir is a direction of the traffic through a proxy.
type Dir uint8

const (
	// Up is from the client that connected to the proxy to the target.
	Up Dir = 1 << iota
	// Down is from the target back to the client.
	Down
	// Both is Up and Down, for the Fault constructors.
	Both = Up | Down
)

// String returns "up", "down" or "both".
func (d Dir) String() string {
	switch d {
	case Up:
		return "up"
	case Down:
		return "down"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Dir(%d)", uint8(d))
}

// Mode is what happens to the bytes going one way.
type Mode uint8

const (
	// ModePass forwards bytes as they come. It is the zero Mode.
	ModePass Mode = iota
	// ModeDelay forwards every chunk Rule.Delay plus up to Rule.Jitter late,
	// in order.
	ModeDelay
	// ModeBlackhole reads bytes and throws them away; connections hang. A
	// connection that lost bytes is reset when the mode ends.
	ModeBlackhole
	// ModeHold reads bytes and keeps them until the mode ends, then forwards
	// them in order.
	ModeHold
)

// String returns the mode's name: "pass", "delay", "blackhole" or "hold".
func (m Mode) String() string {
	switch m {
	case ModePass:
		return "pass"
	case ModeDelay:
		return "delay"
	case ModeBlackhole:
		return "blackhole"
	case ModeHold:
		return "hold"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Rule is what a proxy does to one direction of its traffic. The zero Rule
// passes bytes unchanged.
type Rule struct {
	Mode Mode
	// Delay is added to every chunk in ModeDelay; it must be zero otherwise.
	Delay time.Duration
	// Jitter adds a random extra delay in [0, Jitter) to every chunk in
	// ModeDelay, drawn from the proxy's seeded source; order is kept anyway.
	// It must be zero in other modes.
	Jitter time.Duration
}

// String describes r, e.g. "hold" or "delay 50ms+10ms".
func (r Rule) String() string {
	if r.Mode == ModeDelay {
		if r.Jitter > 0 {
			return fmt.Sprintf("delay %v+%v", r.Delay, r.Jitter)
		}
		return fmt.Sprintf("delay %v", r.Delay)
	}
	return r.Mode.String()
}

func (r Rule) validate(name string) error {
	if r.Mode > ModeHold {
		return fmt.Errorf("netproxy: %s mode is %v; use ModePass, ModeDelay, ModeBlackhole or ModeHold", name, r.Mode)
	}
	if r.Delay < 0 || r.Jitter < 0 {
		return fmt.Errorf("netproxy: %s delay %v and jitter %v must not be negative", name, r.Delay, r.Jitter)
	}
	if r.Mode != ModeDelay && (r.Delay != 0 || r.Jitter != 0) {
		return fmt.Errorf("netproxy: %s has delay %v and jitter %v in mode %v; they are only accepted with ModeDelay", name, r.Delay, r.Jitter, r.Mode)
	}
	return nil
}

// ConnMode is what happens to connections, rather than bytes.
type ConnMode uint8

const (
	// ConnsAccept accepts new connections and forwards them. It is the zero
	// ConnMode.
	ConnsAccept ConnMode = iota
	// ConnsDrop parks new connections, unforwarded, until ConnsAccept
	// comes back; open connections are left alone.
	ConnsDrop
	// ConnsReset resets every open connection (RST to both sides) when the
	// fault is set, and every new connection as soon as it is accepted.
	ConnsReset
)

// String returns "accept", "drop" or "reset".
func (m ConnMode) String() string {
	switch m {
	case ConnsAccept:
		return "accept"
	case ConnsDrop:
		return "drop"
	case ConnsReset:
		return "reset"
	}
	return fmt.Sprintf("ConnMode(%d)", uint8(m))
}

// Fault is the whole state of one link. The zero Fault is a healthy link.
// Faults are plain values: compare them with ==, log them with String.
type Fault struct {
	Up    Rule     // client → target
	Down  Rule     // target → client
	Conns ConnMode // new (and, for ConnsReset, open) connections
}

// Validate returns an error describing the first field that is out of range.
func (f Fault) Validate() error {
	if err := f.Up.validate("up"); err != nil {
		return err
	}
	if err := f.Down.validate("down"); err != nil {
		return err
	}
	if f.Conns > ConnsReset {
		return fmt.Errorf("netproxy: conns mode is %v; use ConnsAccept, ConnsDrop or ConnsReset", f.Conns)
	}
	return nil
}

// String describes f, e.g. "up=hold down=pass conns=accept" or "healthy".
func (f Fault) String() string {
	if f == (Fault{}) {
		return "healthy"
	}
	return fmt.Sprintf("up=%v down=%v conns=%v", f.Up, f.Down, f.Conns)
}

func (f Fault) rule(d Dir) Rule {
	if d == Up {
		return f.Up
	}
	return f.Down
}

func onDirs(d Dir, r Rule) Fault {
	var f Fault
	if d&Up != 0 {
		f.Up = r
	}
	if d&Down != 0 {
		f.Down = r
	}
	return f
}

// Delay returns a Fault that delays direction d by delay plus a jitter in
// [0, jitter).
func Delay(d Dir, delay, jitter time.Duration) Fault {
	return onDirs(d, Rule{Mode: ModeDelay, Delay: delay, Jitter: jitter})
}

// Blackhole returns a Fault that loses the bytes going direction d.
func Blackhole(d Dir) Fault { return onDirs(d, Rule{Mode: ModeBlackhole}) }

// Hold returns a Fault that holds back the bytes going direction d until the
// next Set.
func Hold(d Dir) Fault { return onDirs(d, Rule{Mode: ModeHold}) }

// Reset returns a Fault that resets every open and every new connection.
func Reset() Fault { return Fault{Conns: ConnsReset} }

// DropNew returns a Fault that leaves new connections hanging and open ones
// alone.
func DropNew() Fault { return Fault{Conns: ConnsDrop} }

// Cut returns the Fault of a network partition: both directions blackholed
// and new connections left hanging. It is what a Partition puts on a cut
// link unless told otherwise.
func Cut() Fault {
	f := Blackhole(Both)
	f.Conns = ConnsDrop
	return f
}
