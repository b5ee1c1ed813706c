//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package tokenauth

import "os"

// On systems without flock(2) (Windows among them) edits take no lock:
// two runs at once may lose one's edit, as the docs say. The target is
// Linux; this keeps the command building elsewhere.

func tryLockFile(*os.File) (busy bool, err error) { return false, nil }

func lockFile(*os.File) error { return nil }
