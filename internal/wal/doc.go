// Package wal is an append-only log file of records with group commit, the
// durable half of the fence package's file FloorStore and of the object
// store behind `fencer store`.
//
// A record is opaque bytes. Append queues it and returns a Ticket at once;
// Wait blocks until the record is on disk (written and fsynced). One writer
// goroutine writes everything queued since its last fsync as one batch,
// with a single write and a single fsync, so N concurrent callers pay for
// about one fsync, not N: while one batch is being synced, the next one
// fills.
//
// The batch, not the record, is the unit of the checksum, because it is
// the unit of acknowledgement: no record of a batch is acknowledged before
// the whole batch is synced. A crash (kill -9, power loss) can only damage
// the last batch, which nobody was told is durable; after a power loss it
// may come back partly zeroed, partly intact, in any pattern. Open replays
// the intact batches in order and cuts off a damaged one at the end of the
// file. A damaged batch followed by an intact one cannot come from a crash
// (the later one was only written after the earlier was synced), so Open
// refuses that file with ErrCorrupt rather than silently dropping
// acknowledged records.
//
// The log is rewritten from a snapshot of the caller's state when it grows
// (Options.Snapshot), so that it stays proportional to the live state.
//
// The file format: an 8-byte magic chosen by the user of the log, then
// batch frames of [4-byte little-endian payload length n][4-byte CRC-32C
// of the length bytes and the payload][n bytes of payload], where the
// payload is one or more records, each a uvarint length ≥ 1 and that many
// bytes. A frame holds at most max(4 MiB, one largest record).
package wal
