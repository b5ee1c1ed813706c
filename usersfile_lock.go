package tokenauth

import (
	"fmt"
	"os"
)

// Two runs of `caddy token-auth-users` at once on one users file would
// each read it, change it and write it back, the second losing the first's
// edit. Each edit therefore holds an exclusive lock on `<file>.lock`
// beside the users file (the users file itself cannot carry the lock: it
// is replaced by a rename, so a second run would lock the new file while
// the first still holds the old one). The lock file is left in place:
// removing it would let a run that opened it just before lock a file no
// other run sees. Running Caddy never takes the lock; it reads the file
// whole, and the atomic rename is what keeps it from a half-written one.

// lockUsersFile takes the lock of path's edits, waiting for another run
// that holds it (saying so on standard error), and returns its release.
func lockUsersFile(path string) (unlock func(), err error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file %s: %w", name, err)
	}
	busy, err := tryLockFile(f)
	if err == nil && busy {
		fmt.Fprintf(os.Stderr, "waiting for another edit of %s to finish (lock file %s)\n", path, name)
		err = lockFile(f)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return func() { _ = f.Close() }, nil // closing the file releases the lock
}
