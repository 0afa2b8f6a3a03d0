//go:build !unix

package wal

import "os"

// lockFile does nothing where flock is missing: two logs opened on one
// file there are the caller's mistake to avoid.
func lockFile(*os.File) error { return nil }

// syncDir does nothing where directories cannot be synced.
func syncDir(string) error { return nil }
