package interop

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// userAgent plays the person at a browser without JavaScript: it keeps
// cookies, reads the server's HTML forms and submits them, and never follows
// a redirect that leaves the server (that one is the client's to read).
type userAgent struct {
	t      testing.TB
	s      *server
	client *http.Client
}

func newUserAgent(t testing.TB, s *server) *userAgent {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &userAgent{t: t, s: s, client: &http.Client{
		Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// authResult is how an authorization request ended.
type authResult struct {
	Pages    []string   // the server's pages on the way: "login", "consent"
	Status   int        // of the redirect to the client
	Location *url.URL   // the redirect to the client
	Query    url.Values // its query: code or error, state, iss
}

// authorize runs an authorization request to its end, as a person would: it
// opens authURL, signs in with login and password when the login form comes,
// answers the consent form by pressing the button valued decision, and
// returns the redirect that sends the browser back to the client.
func (ua *userAgent) authorize(authURL, login, password, decision string) authResult {
	t := ua.t
	t.Helper()
	var res authResult
	resp, body := ua.do(http.MethodGet, authURL, nil)
	for range 6 {
		switch {
		case resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther:
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatalf("redirect to %q: %v", resp.Header.Get("Location"), err)
			}
			if loc.Host == resp.Request.URL.Host {
				resp, body = ua.do(http.MethodGet, loc.String(), nil)
				continue
			}
			if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
				t.Errorf("redirect carrying the authorization response has Cache-Control %q; want no-store", cc)
			}
			res.Status, res.Location, res.Query = resp.StatusCode, loc, loc.Query()
			return res
		case resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"):
			checkPageHeaders(t, resp)
			f := parseForm(t, resp.Request.URL, body)
			switch {
			case f.has("password"):
				res.Pages = append(res.Pages, "login")
				f.values.Set("login", login)
				f.values.Set("password", password)
			case f.buttons["action"] != nil:
				res.Pages = append(res.Pages, "consent")
				if !contains(f.buttons["action"], "allow") || !contains(f.buttons["action"], "deny") {
					t.Fatalf("consent form buttons %q; want action=allow and action=deny", f.buttons["action"])
				}
				f.values.Set("action", decision)
			default:
				t.Fatalf("page at %s has neither the login nor the consent form:\n%s", resp.Request.URL, body)
			}
			if f.values.Get("csrf_token") == "" {
				t.Errorf("the %s form has no csrf_token", res.Pages[len(res.Pages)-1])
			}
			resp, body = ua.do(f.method, f.action.String(), f.values)
		default:
			t.Fatalf("%s %s: status %d, Content-Type %q:\n%s", resp.Request.Method, resp.Request.URL, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	t.Fatalf("the authorization request did not come back to the client after pages %q", res.Pages)
	return res
}

func (ua *userAgent) do(method, target string, form url.Values) (*http.Response, string) {
	ua.t.Helper()
	var r io.Reader
	if form != nil {
		r = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, r)
	if err != nil {
		ua.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := ua.client.Do(req)
	if err != nil {
		ua.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		ua.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp, string(b)
}

// checkPageHeaders checks what API.md asks of the login and consent pages.
func checkPageHeaders(t testing.TB, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page %s: Content-Security-Policy %q lacks %q", resp.Request.URL.Path, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("page %s: Content-Security-Policy %q allows inline code", resp.Request.URL.Path, csp)
	}
	if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("page %s: X-Frame-Options %q; want DENY", resp.Request.URL.Path, got)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("page %s: Cache-Control %q; want no-store (it carries a CSRF token)", resp.Request.URL.Path, cc)
	}
}

// form is an HTML form: its fields with their values, and the name/value
// pairs of its submit buttons.
type form struct {
	method  string
	action  *url.URL
	values  url.Values
	buttons map[string][]string
}

func (f *form) has(name string) bool { _, ok := f.values[name]; return ok }

var (
	formRe = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	tagRe  = regexp.MustCompile(`(?is)<(input|button)\b([^>]*)>`)
	attrRe = regexp.MustCompile(`(?s)([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2] + a[3] + a[4])
	}
	return m
}

// parseForm reads the one form of a server page. The pages are the server's
// own templates, so a few regular expressions read them well enough.
func parseForm(t testing.TB, page *url.URL, body string) *form {
	t.Helper()
	forms := formRe.FindAllStringSubmatch(body, -1)
	if len(forms) != 1 {
		t.Fatalf("page %s has %d forms; want 1:\n%s", page, len(forms), body)
	}
	fa := attrs(forms[0][1])
	action, err := page.Parse(fa["action"])
	if err != nil {
		t.Fatalf("form action %q: %v", fa["action"], err)
	}
	f := &form{method: strings.ToUpper(fa["method"]), action: action, values: url.Values{}, buttons: map[string][]string{}}
	if f.method != http.MethodPost {
		t.Errorf("form on %s has method %q; want POST", page, fa["method"])
	}
	for _, tag := range tagRe.FindAllStringSubmatch(forms[0][2], -1) {
		a := attrs(tag[2])
		name := a["name"]
		if name == "" {
			continue
		}
		if strings.EqualFold(tag[1], "button") || a["type"] == "submit" {
			f.buttons[name] = append(f.buttons[name], a["value"])
			continue
		}
		f.values.Set(name, a["value"])
	}
	return f
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
