// Package store is the fenced key-value service behind `fencer store`: the
// storage service of Kleppmann's diagram, which checks every request's
// fencing token and refuses one lower than a token it has already seen.
// Client 1 writes with token 33 and pauses past its lease; client 2 writes
// with 34; when client 1 wakes up, its write with 33 gets 409 Conflict.
// The checker runs it as the storage its scenarios write to, and reads its
// accept log to see what was accepted, in what order.
//
// # HTTP API
//
//	PUT /v1/objects/{key}   body: the value (at most 1 MiB); header Fencing-Token
//	    204 accepted and durable; 409 stale token; 400 missing or malformed
//	    token or key; 413 value too large
//	GET /v1/objects/{key}   header Fencing-Token
//	    200 with the value; 404 no value (the token is still accepted);
//	    409 stale token; 400 missing or malformed token or key
//	GET /v1/log[?after=SEQ] the accept log, JSON lines, oldest first
//
// A key is 1 to 256 bytes of UTF-8 without control characters; it may
// contain "/" (escaped as %2F or not, but not as empty, "." or ".." path
// segments, which HTTP path cleaning would change). Other paths get 404,
// other methods on these paths 405 with an Allow header. Error bodies are
// plain text that says what was wrong and what is accepted.
//
// # Fencing
//
// Each key has a floor: the highest token a request on it has been
// accepted with. A request with a lower token is refused; an equal one (the
// same holder's next request) or a higher one is accepted, and raises the
// floor. Reads carry a token and raise the floor too: otherwise a stale
// write arriving between a newer holder's read and its write would be
// accepted and then overwritten by that write, a lost update. The check
// and the write happen atomically per key.
//
// # Durability
//
// With a data directory, every accepted PUT appends one record holding the
// key, its new floor and its new value, and every GET that raises a floor
// appends one holding the floor; the response waits until the record is
// fsynced. Requests arriving together share one fsync (group commit), so
// throughput is not bounded by one fsync per request. Opening the
// directory replays the log, so values and floors survive kill -9 and
// restart; the log is rewritten from the live state when it doubles past
// 16 MiB. A response is also never based on state that is not yet durable:
// a GET, or a refusal, waits for the record that produced what it reports.
// Without a data directory everything is in memory and lost on exit.
// Values and floors are always held in memory; every key ever used keeps
// an entry.
//
// # The accept log
//
// Every token decision (accepted or refused, PUT or GET) is recorded with
// a sequence number that orders the decisions on each key as they
// happened: {"seq", "op" ("put" or "get"), "key", "token", "accepted",
// "floor" (after the decision), "value_len" (bytes written or read)}.
// Requests refused before the token check (400, 413) are not recorded. The
// log is kept in memory only: it holds the most recent Config.LogEntries
// (100,000 by default) entries, older ones are dropped (a reader sees the
// gap in seq), and it starts empty, from seq 1, when the server restarts.
// An accepted entry means the store decided to accept; if the store then
// fails to persist it, the client gets 500 and the store refuses all
// further writes.
package store
