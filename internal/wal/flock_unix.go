//go:build unix

package wal

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock on f. It is released
// when f is closed (or the process dies).
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// syncDir fsyncs a directory, making a rename or a new file in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
