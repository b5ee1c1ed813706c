//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package tokenauth

import (
	"errors"
	"os"
	"syscall"
)

// flock(2) locks belong to the open file, not the process: two runs in
// one process (the tests' goroutines) exclude each other as two processes
// do, and the lock goes when the file is closed or the process dies.

// tryLockFile takes the lock if it is free; busy when another holds it.
func tryLockFile(f *os.File) (busy bool, err error) {
	err = flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}

// lockFile waits for the lock.
func lockFile(f *os.File) error { return flock(f, syscall.LOCK_EX) }

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
