package fuzz

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The package doc names every fuzz target of the server's module, so that
// a reader finds each parser's; it left six out.
func TestDocNamesEveryTarget(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	target := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	n := 0
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "interop" || d.Name() == "mysql" || strings.HasPrefix(d.Name(), ".") && d.Name() != "..") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") || filepath.Base(filepath.Dir(path)) == "fuzz" { // this package's own cross the others
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range target.FindAllStringSubmatch(string(src), -1) {
			n++
			if name := filepath.Base(filepath.Dir(path)) + "." + m[1]; !strings.Contains(string(doc), name) {
				t.Errorf("fuzz/doc.go does not name %s (%s)", name, path)
			}
		}
		return nil
	})
	if err != nil || n < 20 {
		t.Fatalf("found %d targets, %v; want the module's twenty and more", n, err)
	}
}
