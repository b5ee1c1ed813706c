package tokenauth

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestDocsLinksResolve keeps the README and the docs pages navigable: every
// relative link in them names a file or directory of the checkout and, with
// a #fragment, a heading of that file. Links to other sites are not fetched.
func TestDocsLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "README.md", "BENCHMARKS.md", "xcaddy.md")
	for _, broken := range brokenDocLinks(t, pages) {
		t.Error(broken)
	}
}

// TestBrokenDocLinksFindsEveryKind proves the checker above would notice:
// a missing file, a missing heading in another page and in the same page.
func TestBrokenDocLinksFindsEveryKind(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	other := write("other.md", "# Other page\n\n## Managing users: `caddy token-auth-users`\n")
	page := write("page.md", "# Page\n\n"+
		"[ok](other.md) [ok](other.md#managing-users-caddy-token-auth-users) [ok](#page) [ok](https://example.com/x.md)\n"+
		"`[not a link](nowhere.md)`\n```\n[not a link](nowhere.md)\n```\n"+
		"[bad](missing.md) [bad](other.md#no-such-heading) [bad](#nor-here) ![bad](gone.png)\n")

	got := brokenDocLinks(t, []string{page, other})
	want := []string{"missing.md", "other.md#no-such-heading", "#nor-here", "gone.png"}
	if len(got) != len(want) {
		t.Fatalf("found %d broken links, want %d: %q", len(got), len(want), got)
	}
	for i, target := range want {
		if !strings.Contains(got[i], "("+target+")") {
			t.Errorf("broken link %d = %q, want it to name %s", i, got[i], target)
		}
	}
}

// markdownLink matches [text](target) and ![alt](target); the target ends at
// a space (a title) or the closing parenthesis.
var markdownLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)[^)]*\)`)

var inlineCode = regexp.MustCompile("`[^`]*`")

// brokenDocLinks reads each page and returns one line per relative link that
// does not resolve, naming the page, the line and the target.
func brokenDocLinks(t *testing.T, pages []string) []string {
	t.Helper()
	var broken []string
	for _, page := range pages {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range linesOutsideCode(string(text)) {
			for _, m := range markdownLink.FindAllStringSubmatch(inlineCode.ReplaceAllString(line, ""), -1) {
				if problem := checkDocLink(t, page, m[1]); problem != "" {
					broken = append(broken, page+":"+strconv.Itoa(i+1)+": ("+m[1]+") "+problem)
				}
			}
		}
	}
	return broken
}

// linesOutsideCode returns the lines of a markdown text with those inside
// ``` fences blanked, so that line numbers stay right.
func linesOutsideCode(text string) []string {
	lines := strings.Split(text, "\n")
	inFence := false
	for i, line := range lines {
		fence := strings.HasPrefix(strings.TrimSpace(line), "```")
		if fence {
			inFence = !inFence
		}
		if fence || inFence {
			lines[i] = ""
		}
	}
	return lines
}

// checkDocLink says what is wrong with one link target of page, or "".
func checkDocLink(t *testing.T, page, target string) string {
	t.Helper()
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return ""
	}
	path, anchor, _ := strings.Cut(target, "#")
	file := page
	if path != "" {
		file = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
		if _, err := os.Stat(file); err != nil {
			return "no such file: " + file
		}
	}
	if anchor == "" {
		return ""
	}
	if filepath.Ext(file) != ".md" {
		return "an anchor into a file that is not markdown"
	}
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(headingAnchors(string(text)), anchor) {
		return "no heading with anchor #" + anchor + " in " + file
	}
	return ""
}

// headingAnchors lists the anchors GitHub gives a markdown file's headings:
// lower case, punctuation dropped, spaces turned into hyphens, and -1, -2
// appended to repeats.
func headingAnchors(text string) []string {
	var anchors []string
	seen := map[string]int{}
	for _, line := range linesOutsideCode(text) {
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		anchor := githubAnchor(title)
		if n := seen[anchor]; n > 0 {
			seen[anchor]++
			anchor += "-" + strconv.Itoa(n)
		} else {
			seen[anchor] = 1
		}
		anchors = append(anchors, anchor)
	}
	return anchors
}

func githubAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(title)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
