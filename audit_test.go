package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// What AUDITING.md must map, by the call a function makes (its text as
// written): secret comparisons, token mints, token checks.
var auditPatterns = map[string]*regexp.Regexp{
	"Secret comparisons": regexp.MustCompile(`^(hmac\.Equal|subtle\.ConstantTimeCompare)$`),
	"Token mints":        regexp.MustCompile(`^token\.(NewOpaque|NewID|NewTimedID|NewUserCode)$|^(idTokens|ts\.Signer|bc\.signer)\.Sign$`),
	"Token checks":       regexp.MustCompile(`^(ts|o\.Tokens)\.Verify(Issued)?$|\.Verifier\.Parse$|\.(RotateRefresh|ExchangeCode|PendingDeviceCode|PollDeviceCode|RedeemDeviceCode)$|^parseIDTokenHint$|^b\.csrfOK$|^token\.ParseProof$|\.SpendProof$|\.(RegistrationTokenLive|RegisterClient|ClientByRegistrationHash|UpdateRegisteredClient)$`),
}

// sqlCall is a database/sql call: only store/ may make one, and the MySQL
// driver's connection settings (the nested module mysql/).
var sqlCall = regexp.MustCompile(`\.(ExecContext|QueryContext|QueryRowContext|PrepareContext|BeginTx)$`)

func sqlPlace(path string) bool { return strings.HasPrefix(path, "store/") || path == "mysql/mysql.go" }

// TestAuditMap keeps AUDITING.md true: every function of the server that
// compares a secret, mints or checks a token is listed in its section (and
// every function listed there still does), and SQL is only in store/.
func TestAuditMap(t *testing.T) {
	md, err := os.ReadFile("AUDITING.md")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{} // section → "file function" pairs in the code
	fset := token.NewFileSet()
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == "interop" || path == "e2e" || path == "bench" || path == "fuzz" || strings.HasSuffix(path, "test") || strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			name := funcName(fd)
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				c, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				var b bytes.Buffer
				printer.Fprint(&b, fset, c.Fun)
				call := b.String()
				for section, re := range auditPatterns {
					if re.MatchString(call) {
						found[section] = append(found[section], path+" "+name)
					}
				}
				if sqlCall.MatchString(call) && !sqlPlace(path) {
					t.Errorf("%s %s calls %s: SQL belongs in store/ (AUDITING.md)", path, name, call)
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for section, re := range auditPatterns {
		listed := mapEntries(t, string(md), section)
		code := slices.Compact(slices.Sorted(slices.Values(found[section])))
		// Were the patterns and the table's parsing both to stop matching,
		// the two lists would be empty and agree: the code must still have
		// about what it had (6, 19 and 18 functions when written).
		if least := map[string]int{"Secret comparisons": 4, "Token mints": 15, "Token checks": 15}[section]; len(code) < least {
			t.Errorf("AUDITING.md, %s: the code has %d functions that call %v; want at least %d (has the pattern stopped matching?)", section, len(code), re, least)
		}
		for _, fn := range code {
			if !slices.Contains(listed, fn) {
				t.Errorf("AUDITING.md, %s: %s is missing (it calls %v)", section, fn, re)
			}
		}
		for _, fn := range listed {
			if !slices.Contains(code, fn) {
				t.Errorf("AUDITING.md, %s: %s is listed but does not call %v", section, fn, re)
			}
		}
	}
}

func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// mapEntries returns the "file function" pairs of a section's table: rows
// `| what | `file` | `Func`, `Func` |`.
func mapEntries(t *testing.T, md, section string) []string {
	_, rest, ok := strings.Cut(md, "## "+section+"\n")
	if !ok {
		t.Fatalf("AUDITING.md has no section %q", section)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	var out []string
	row := regexp.MustCompile("(?m)^\\|[^|]*\\| `([\\w/.]+\\.go)` \\| (.+) \\|$")
	fn := regexp.MustCompile("`([\\w.]+)`")
	for _, m := range row.FindAllStringSubmatch(rest, -1) {
		for _, f := range fn.FindAllStringSubmatch(m[2], -1) {
			out = append(out, m[1]+" "+f[1])
		}
	}
	return out
}
