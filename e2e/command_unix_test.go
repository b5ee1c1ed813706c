//go:build unix

package e2e

// The users command locks its file with flock(2) on Unix only
// (usersfile_lock_flock.go), so this test is Unix-only too.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUsersCommandConcurrentProcesses: runs of the real binary at once on
// one users file take turns on the lock file beside it. While the test
// holds the lock, every run says it is waiting (none edits the file);
// once released, every run's addition is in the file.
func TestUsersCommandConcurrentProcesses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users.json")
	mustUsersCLI(t, "pw\n", "add", "first", "--file", file, "--algorithm", "bcrypt", "--bcrypt-cost", "4")
	lock, err := os.OpenFile(file+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	const n = 4
	cmds := make([]*exec.Cmd, n)
	outs, errOuts := make([]*bytes.Buffer, n), make([]*bytes.Buffer, n)
	drained := make([]chan struct{}, n)
	for i := range cmds {
		cmd := exec.Command(caddyBinary(t), "token-auth-users", "add", fmt.Sprintf("user%d", i), "--file", file, "--algorithm", "bcrypt", "--bcrypt-cost", "4")
		cmd.Stdin = strings.NewReader("pw\n")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		outs[i] = new(bytes.Buffer)
		cmd.Stdout = outs[i]
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
		defer cmd.Process.Kill()
		// the run blocks on the lock and says so (at EOF it finished
		// without waiting: no lock was taken)
		rd := bufio.NewReader(stderr)
		line, err := rd.ReadString('\n')
		if !strings.Contains(line, "waiting for another edit") {
			t.Fatalf("run %d while the lock is held: %q %v, want it waiting for the lock", i, line, err)
		}
		errOuts[i], drained[i] = new(bytes.Buffer), make(chan struct{})
		go func(i int) { // Wait may close the pipe only once it is read
			defer close(drained[i])
			_, _ = io.Copy(errOuts[i], rd)
		}(i)
	}
	if out := mustUsersCLI(t, "", "list", "--file", file); strings.Contains(out, "user") {
		t.Fatalf("a run edited the file while the lock was held:\n%s", out)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		<-drained[i]
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run %d: %v\n%s%s", i, err, outs[i], errOuts[i])
		}
	}
	out := mustUsersCLI(t, "", "list", "--file", file)
	for i := 0; i < n; i++ {
		if !strings.Contains(out, fmt.Sprintf("user%d\t", i)) {
			t.Fatalf("user%d lost:\n%s", i, out)
		}
	}
}
