package testutil

import (
	"os/exec"
	"testing"
)

// LookPath returns the path of the program name, or fails the test with a
// message that says how to install it. A missing server fails rather than
// skips: a skipped backend test would pass without testing anything.
func LookPath(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			if p, err2 := exec.LookPath(dir + "/" + name); err2 == nil {
				return p
			}
		}
		t.Fatalf("%s not found (%v): run ./scripts/test, which installs Debian's %s, or apt-get install %s", name, err, debianPackage, debianPackage)
	}
	return p
}
