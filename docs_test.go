package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The directories of the packages the documents name (`auth.TestX`); the root
// package is main.
var docPackages = map[string]string{
	"auth": "auth", "store": "store", "token": "token", "httpx": "httpx",
	"metrics": "metrics", "ratelimit": "ratelimit", "e2e": "e2e", "interop": "interop",
	"fuzz": "fuzz", "mysql": "mysql", "main": ".", "oauth2-api": ".",
}

var (
	backquoted = regexp.MustCompile("`([^`\n]+)`(?:'s)?")
	// Between a file and the functions that follow it: `f.go` `A`, `B` and `C`.
	adjacent  = regexp.MustCompile(`^\s*(,\s*)?(and\s*)?$`)
	testName  = regexp.MustCompile(`^([\w-]+)\.((Test|Fuzz|Benchmark)\w+)(/\S*)?$`)
	bareTest  = regexp.MustCompile(`^(Test|Fuzz|Benchmark)[A-Z_]\w*$`)
	funcRef   = regexp.MustCompile(`^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$`)
	codeRef   = regexp.MustCompile(`^(auth|store|token|httpx|metrics|ratelimit)\.([A-Za-z_]\w*(\.[A-Za-z_]\w*)?)$`)
	declCache = map[string]*goDecls{}
)

// goDecls is what a directory's Go files declare: functions and methods
// (as Type.Method) by file, other top-level names, and its test functions.
type goDecls struct {
	funcs map[string][]string // file → functions and methods
	names []string            // functions, methods, types, vars, consts of non-test files
	tests []string            // top-level functions of _test.go files
}

func declsOf(t *testing.T, dir string) *goDecls {
	if d, ok := declCache[dir]; ok {
		return d
	}
	d := &goDecls{funcs: map[string][]string{}}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, path := range files {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		test := strings.HasSuffix(path, "_test.go")
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.FuncDecl:
				name := funcName(decl)
				d.funcs[filepath.ToSlash(path)] = append(d.funcs[filepath.ToSlash(path)], name)
				if test && decl.Recv == nil {
					d.tests = append(d.tests, name)
				} else if !test {
					d.names = append(d.names, name)
				}
			case *ast.GenDecl:
				for _, spec := range decl.Specs {
					switch spec := spec.(type) {
					case *ast.TypeSpec:
						d.names = append(d.names, spec.Name.Name)
					case *ast.ValueSpec:
						for _, n := range spec.Names {
							d.names = append(d.names, n.Name)
						}
					}
				}
			}
		}
	}
	declCache[dir] = d
	return d
}

// declares reports whether names holds name: a function, or a method written
// Type.Method or by its name alone.
func declares(names []string, name string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return n == name || strings.HasSuffix(n, "."+name) })
}

// docCells returns the text the documents' references are read in, with its
// line: each cell of a table, each other line; fenced code is skipped.
func docCells(md string) (lines []int, cells []string) {
	fenced := false
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced {
			continue
		}
		for _, cell := range strings.Split(line, " | ") {
			lines, cells = append(lines, i+1), append(cells, cell)
		}
	}
	return lines, cells
}

// checkCell returns what is wrong with the references of one cell.
func checkCell(t *testing.T, cell string) (problems []string) {
	file, pkg, end := "", "", -1
	for _, m := range backquoted.FindAllStringSubmatchIndex(cell, -1) {
		ref := cell[m[2]:m[3]]
		if end < 0 || !adjacent.MatchString(cell[end:m[0]]) {
			file = "" // a function belongs to a file only right after it
		}
		end = m[1]
		wrong := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("`%s`: ", ref)+fmt.Sprintf(format, args...))
		}
		switch {
		case strings.HasSuffix(ref, ".go"):
			file = ""
			if _, err := os.Stat(ref); err != nil {
				wrong("no such file")
			} else {
				file = ref
			}
		case testName.MatchString(ref):
			s := testName.FindStringSubmatch(ref)
			pkg = s[1]
			dir, ok := docPackages[pkg]
			if !ok {
				wrong("no package %s in this repository", pkg)
			} else if !slices.Contains(declsOf(t, dir).tests, s[2]) {
				wrong("no func %s in %s/*_test.go", s[2], dir)
			}
		case bareTest.MatchString(ref):
			if dir, ok := docPackages[pkg]; !ok {
				wrong("a test without its package (write pkg.%s)", ref)
			} else if !slices.Contains(declsOf(t, dir).tests, ref) {
				wrong("no func %s in %s/*_test.go (the package of %s.Test… before it)", ref, dir, pkg)
			}
		case codeRef.MatchString(ref):
			s := codeRef.FindStringSubmatch(ref)
			if !declares(declsOf(t, s[1]).names, s[2]) {
				wrong("not declared in %s/", s[1])
			}
		case file != "" && funcRef.MatchString(ref):
			if !declares(declsOf(t, filepath.Dir(file)).funcs[file], ref) {
				wrong("not a function or method declared in %s", file)
			}
			continue // the next function may be of the same file
		}
		if !strings.HasSuffix(ref, ".go") {
			file = ""
		}
	}
	return problems
}

// TestDocReferences keeps SECURITY.md and README.md pointing at code that
// exists: every `path.go` is a file, every `pkg.TestX` (or a bare `TestX` after
// one in the same cell) a test of that package, every `file.go` `Func` a function
// or method of that file, and every `store.Name` (auth, store, token, httpx,
// metrics, ratelimit) a declaration of that package.
func TestDocReferences(t *testing.T) {
	for _, doc := range []string{"SECURITY.md", "README.md"} {
		md, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		lines, cells := docCells(string(md))
		for i, cell := range cells {
			for _, p := range checkCell(t, cell) {
				t.Errorf("%s:%d: %s", doc, lines[i], p)
			}
		}
	}
}

// Dockerfile, which the deployment guide's `docker build .` and its
// compose's `build: .` read, is Dockerfile.distroless (deploy/README.md).
func TestDockerfileCopy(t *testing.T) {
	a, errA := os.ReadFile("Dockerfile")
	b, errB := os.ReadFile("Dockerfile.distroless")
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("Dockerfile differs from Dockerfile.distroless (%v, %v): copy it again", errA, errB)
	}
}
