// Command loadhelper does the small jobs bench/load.sh needs besides
// Caddy and wrk:
//
//	loadhelper port                         a free TCP port on 127.0.0.1
//	loadhelper hash <password>              a cheap bcrypt hash (cost 4) for the bench user
//	loadhelper wait <url>                   waits (up to 30s) until url answers
//	loadhelper login <url> <user> <pw> <n>  logs in n times; prints "access refresh" per line
//	loadhelper mint <secret> <token> <n>    prints n access tokens like <token>, each with
//	                                        its own jti and sid, signed with the hs256 <secret>
//	loadhelper dpop-login, dpop-proofs      see dpop.go
//
// mint copies header (typ, kid) and claims from a token the plugin issued,
// so the copies are exactly what the guard accepts, without n logins.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "port":
		err = port()
	case "hash":
		need(args, 1)
		var h []byte
		h, err = bcrypt.GenerateFromPassword([]byte(args[0]), bcrypt.MinCost)
		fmt.Println(string(h))
	case "wait":
		need(args, 1)
		err = wait(args[0])
	case "login":
		need(args, 4)
		err = login(args[0], args[1], args[2], atoi(args[3]))
	case "mint":
		need(args, 3)
		err = mint(args[0], args[1], atoi(args[2]))
	case "dpop-login":
		need(args, 4)
		err = dpopLogin(args[0], args[1], args[2], args[3])
	case "dpop-proofs":
		need(args, 4)
		err = dpopProofs(args[0], args[1], args[2], atoi(args[3]))
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadhelper:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadhelper port | hash <pw> | wait <url> | login <url> <user> <pw> <n> | mint <secret> <token> <n> | dpop-login <url> <user> <pw> <keyfile> | dpop-proofs <keyfile> <htu> <token> <n>")
	os.Exit(2)
}

func need(args []string, n int) {
	if len(args) != n {
		usage()
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		usage()
	}
	return n
}

func port() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

func wait(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 30s", url)
}

func login(url, user, pw string, n int) error {
	body, _ := json.Marshal(map[string]string{"strategy": "local", "username": user, "password": pw})
	out := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range out {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := http.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var res struct{ AccessToken, RefreshToken string }
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("login: status %d, %v", resp.StatusCode, err)
				return
			}
			out[i] = res.AccessToken + " " + res.RefreshToken
		}(i)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	for _, line := range out {
		fmt.Fprintln(w, line)
	}
	return w.Flush()
}

func mint(secret, template string, n int) error {
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(template, claims)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; i < n; i++ {
		claims["jti"] = randomID()
		claims["sid"] = randomID()
		t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		t.Header["typ"] = tok.Header["typ"]
		t.Header["kid"] = tok.Header["kid"]
		s, err := t.SignedString([]byte(secret))
		if err != nil {
			return err
		}
		fmt.Fprintln(w, s)
	}
	return w.Flush()
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
