package history

// Event is one line of a history file. Its JSON form, one object per line:
//
//	{"time":81234567890123,"process":"c1","op":7,"kind":"write-invoke","lock":"L","token":33,"value":"v7","attrs":{"node":"n2"}}
//
// Only time, process and kind are always present; the other fields are left
// out when empty.
type Event struct {
	// Time is when it happened, from [Now]. [Recorder.Record] fills it in
	// when it is zero. An invocation is stamped before the request is sent
	// and a completion after the reply arrives, so the interval between them
	// contains the real operation.
	Time Time `json:"time"`
	// Process names the actor: a client ("c1"), a server node ("n2"), or the
	// fault injector ("nemesis"). One process may write events with several
	// names; the name, not the file, is what the checker groups by.
	Process string `json:"process"`
	// Op pairs an invocation with its completion: both carry the same
	// Process and Op. It is unique within a Process; zero means the event
	// stands alone (faults, pauses, lease-lost). See [Recorder.NextOp].
	Op uint64 `json:"op,omitempty"`
	// Kind says what happened: one of the Kind constants, or a new kind
	// that the checker knows.
	Kind Kind `json:"kind"`
	// Lock is the name of the lock or resource involved.
	Lock string `json:"lock,omitempty"`
	// Token is the fencing token granted, held or sent; zero means none.
	Token uint64 `json:"token,omitempty"`
	// Value is the value written or read.
	Value string `json:"value,omitempty"`
	// Err is the error text of a failed or uncertain operation.
	Err string `json:"error,omitempty"`
	// Attrs are free-form details: the node a request went to, the fault's
	// parameters, a lease's deadline.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Kind is what an [Event] records. Operation kinds come in an invocation
// (-invoke) and one completion: -ok (it took effect), -fail (it certainly did
// not), -unknown (the client cannot tell, e.g. a timeout; it may take effect
// at any later time). A missing completion means the same as -unknown.
type Kind string

// The kinds of events a checker run records.
const (
	AcquireInvoke  Kind = "acquire-invoke"
	AcquireOK      Kind = "acquire-ok" // Token is the grant's token
	AcquireFail    Kind = "acquire-fail"
	AcquireUnknown Kind = "acquire-unknown"

	ReleaseInvoke  Kind = "release-invoke"
	ReleaseOK      Kind = "release-ok"
	ReleaseFail    Kind = "release-fail"
	ReleaseUnknown Kind = "release-unknown"

	// LeaseLost: the client's own view says its lease ended (Lease.Done
	// closed); it must not act on the lock any more.
	LeaseLost Kind = "lease-lost"

	ReadInvoke  Kind = "read-invoke"
	ReadOK      Kind = "read-ok" // Value is what was read
	ReadFail    Kind = "read-fail"
	ReadUnknown Kind = "read-unknown"

	WriteInvoke Kind = "write-invoke" // Token is the token sent with the write
	WriteOK     Kind = "write-ok"
	// WriteRejected: the storage refused the write's token as stale.
	WriteRejected Kind = "write-rejected"
	WriteFail     Kind = "write-fail"
	WriteUnknown  Kind = "write-unknown"

	// FaultStart and FaultEnd bracket an injected fault; Attrs describe it.
	FaultStart Kind = "fault-start"
	FaultEnd   Kind = "fault-end"
	// Pause and Resume bracket a SIGSTOP of the process named by Process.
	Pause  Kind = "pause"
	Resume Kind = "resume"
)
