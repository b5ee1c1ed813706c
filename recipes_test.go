package tokenauth

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecipesAdapt runs `caddy adapt` on every docs/recipes/*.Caddyfile
// with the real binary: each recipe of the README must be valid Caddyfile
// that yields a token_auth handler.
func TestRecipesAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("docs", "recipes", "*.Caddyfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recipes: %v", err)
	}
	bin := caddyBinary(t)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".Caddyfile"), func(t *testing.T) {
			cmd := exec.Command(bin, "adapt", "--config", f, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("caddy adapt %s: %v\n%s", f, err, stderr)
			}
			var cfg map[string]any
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatalf("adapted config is not JSON: %v", err)
			}
			if !strings.Contains(string(out), `"handler":"token_auth"`) {
				t.Fatalf("no token_auth handler in the adapted config:\n%s", out)
			}
		})
	}
}
