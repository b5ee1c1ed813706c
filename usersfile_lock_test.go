package tokenauth

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestUsersCommandConcurrentEditsLoseNothing: many runs of the command at
// once on one file (goroutines here; e2e/command_test.go runs processes)
// each add their user, and every one is in the file afterwards.
func TestUsersCommandConcurrentEditsLoseNothing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users.json")
	edit := func(action, id string) *usersEdit {
		return &usersEdit{action: action, file: file, id: id, flags: changed{"name": true}, name: "before",
			algorithm: "bcrypt", bcryptCost: 4, newPassword: action == "add",
			readPassword: func() ([]byte, error) { return []byte("pw"), nil }, out: &bytes.Buffer{}}
	}
	if err := edit("add", "first").run(); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs <- edit("add", fmt.Sprintf("user%02d", i)).run()
		}(i)
	}
	wg.Add(1)
	go func() { // an update racing the additions is not lost either
		defer wg.Done()
		<-start
		e := edit("update", "first")
		e.name = "after"
		errs <- e.run()
	}()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	users, _, err := readUsersJSON(file, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != n+1 {
		t.Fatalf("%d users in the file after %d concurrent additions, want %d", len(users), n, n+1)
	}
	if i := indexOfUser(users, "first"); i < 0 || users[i].Name != "after" {
		t.Fatalf("the concurrent update was lost: %+v", users)
	}
	if _, err := os.Stat(file + ".lock"); err != nil {
		t.Fatalf("no lock file beside the users file: %v", err)
	}
}

// TestUsersCommandLockFileError: a lock file that cannot be opened stops
// the edit with an error naming it, and the users file is unchanged.
func TestUsersCommandLockFileError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users.json")
	add := &usersEdit{action: "add", file: file, id: "alice", flags: changed{}, algorithm: "bcrypt", bcryptCost: 4,
		newPassword: true, readPassword: func() ([]byte, error) { return []byte("pw"), nil }, out: &bytes.Buffer{}}
	if err := add.run(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(file)
	if err := os.Remove(file + ".lock"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(file+".lock", 0o700); err != nil { // a directory cannot be opened for writing
		t.Fatal(err)
	}
	add.id = "bob"
	err := add.run()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(file+".lock")) {
		t.Fatalf("with an unusable lock file: %v, want an error naming it", err)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(after, before) {
		t.Fatal("the users file changed")
	}
}
