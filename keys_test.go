package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"oauth2-api/auth"
	"oauth2-api/store"
	"oauth2-api/token"
)

func TestKeysGenerate(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		out := filepath.Join(dir, alg+".pem")
		var stdout bytes.Buffer
		if err := keysCmd(nil, nil, []string{"generate", "--alg", alg, "--out", out}, nil, &stdout); err != nil {
			t.Fatalf("keys generate --alg %s: %v", alg, err)
		}
		fi, err := os.Stat(out)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v; want 0600", out, err, fi.Mode().Perm())
		}
		k, err := loadKey("SIGNING_KEY", out, true)
		if err != nil || k.Alg != alg || !strings.Contains(stdout.String(), k.ID) {
			t.Fatalf("%s: loadKey = %v, %v; output %q", alg, k, err, stdout.String())
		}
		if alg == "RS256" {
			data, _ := os.ReadFile(out)
			b, _ := pem.Decode(data)
			p, _ := x509.ParsePKCS8PrivateKey(b.Bytes)
			if p.(*rsa.PrivateKey).N.BitLen() != 3072 {
				t.Fatalf("default RSA key has %d bits; want 3072", p.(*rsa.PrivateKey).N.BitLen())
			}
		}
		// Never overwrite.
		before, _ := os.ReadFile(out)
		err = keysCmd(nil, nil, []string{"generate", "--alg", alg, "--out", out}, nil, &stdout)
		after, _ := os.ReadFile(out)
		if exitCode(err) != 2 || !bytes.Equal(before, after) {
			t.Fatalf("second generate to %s: %v; want a usage error and the file unchanged", out, err)
		}
	}
	for _, args := range [][]string{{"generate"}, {"generate", "--alg", "HS256", "--out", filepath.Join(dir, "x")}, {"rotate"}, {}} {
		if err := keysCmd(nil, nil, args, nil, &bytes.Buffer{}); exitCode(err) != 2 {
			t.Errorf("keys %v = %v; want exit 2", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a refused generate wrote a file")
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	return p
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKCS8PrivateKey(small)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	goodDER, _ := x509.MarshalPKCS8PrivateKey(good)
	pubDER, _ := x509.MarshalPKIXPublicKey(&good.PublicKey)
	sec1, _ := x509.MarshalECPrivateKey(good)
	for name, tc := range map[string]struct {
		path    string
		release bool
		want    string
	}{
		"short RSA":    {writePEM(t, dir, "small.pem", "PRIVATE KEY", smallDER, 0o600), false, "2048"},
		"P-384":        {writePEM(t, dir, "p384.pem", "PRIVATE KEY", p384DER, 0o600), false, "P-256"},
		"public key":   {writePEM(t, dir, "pub.pem", "PUBLIC KEY", pubDER, 0o600), false, "not a private key"},
		"missing file": {filepath.Join(dir, "nope.pem"), false, "no such file"},
		"not PEM":      {writePEM(t, dir, "x.txt", "", nil, 0o600), false, ""},
		"mode 0644":    {writePEM(t, dir, "open.pem", "PRIVATE KEY", goodDER, 0o644), true, "0600"},
		"mode 0640":    {writePEM(t, dir, "group.pem", "PRIVATE KEY", goodDER, 0o640), true, "0600"},
		"huge file":    {writePEM(t, dir, "huge.pem", "PRIVATE KEY", make([]byte, 70<<10), 0o600), false, "larger than 65536 bytes"},
	} {
		if name == "not PEM" {
			os.WriteFile(tc.path, []byte("hello"), 0o600)
		}
		_, err := loadKey("SIGNING_KEY", tc.path, tc.release)
		if err == nil || !strings.HasPrefix(err.Error(), "SIGNING_KEY: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: loadKey = %v; want an error naming SIGNING_KEY and %q", name, err, tc.want)
		}
	}
	// The server refuses such a key as a configuration error (exit 2, which
	// the systemd unit does not restart) before it touches the database:
	// it exited 1 after the migrations, and was restarted every 5 s.
	for _, env := range []map[string]string{
		{"SIGNING_KEY": filepath.Join(dir, "nope.pem")},
		{"SIGNING_KEY": filepath.Join(dir, "small.pem")},
		{"SIGNING_KEY": writePEM(t, dir, "ok.pem", "PRIVATE KEY", goodDER, 0o600), "SIGNING_KEYS_PREVIOUS": filepath.Join(dir, "p384.pem")},
	} {
		env["DATABASE_URL"] = "sqlite://" + filepath.Join(dir, "never.db")
		env["PORT"] = strconv.Itoa(freePort(t))
		_, _, err := runCmd(t, env, "", "serve")
		if exitCode(err) != 2 {
			t.Errorf("serve with %v = %v (exit %d); want exit 2", env, err, exitCode(err))
		}
		if _, err := os.Stat(filepath.Join(dir, "never.db")); err == nil {
			t.Fatalf("serve with %v opened the database before refusing its key", env)
		}
	}
	// Debug mode tolerates a wide mode; SEC 1 EC keys are accepted.
	if _, err := loadKey("SIGNING_KEY", filepath.Join(dir, "open.pem"), false); err != nil {
		t.Errorf("debug mode refused a 0644 key: %v", err)
	}
	if k, err := loadKey("SIGNING_KEY", writePEM(t, dir, "sec1.pem", "EC PRIVATE KEY", sec1, 0o600), true); err != nil || k.Alg != token.ES256 {
		t.Errorf("SEC 1 key: %v, %v", k, err)
	}
}

// With SIGNING_KEY and SIGNING_KEYS_PREVIOUS set, the server signs with the
// key, publishes both, and refuses to start on a bad previous key.
func TestBuildKeys(t *testing.T) {
	dir := t.TempDir()
	cur, prev := filepath.Join(dir, "cur.pem"), filepath.Join(dir, "prev.pem")
	for _, f := range []string{cur, prev} {
		if err := keysCmd(nil, nil, []string{"generate", "--alg", "ES256", "--out", f}, nil, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"DATABASE_URL": filepath.Join(dir, "o.db"), "JWT_SECRET": strings.Repeat("s", 32),
		"SIGNING_KEY": cur, "SIGNING_KEYS_PREVIOUS": prev + ", "}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	db, err := openStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ks, err := buildKeys(cfg, db, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	curKey, _ := loadKey("", cur, false)
	prevKey, _ := loadKey("", prev, false)
	if ks.idTokens == nil || ks.idTokens.Key().ID != curKey.ID || ks.tokens.Signer.Key().ID != curKey.ID {
		t.Fatal("not signing with SIGNING_KEY")
	}
	if len(ks.public) != 2 || ks.public[0].ID != curKey.ID || ks.public[1].ID != prevKey.ID {
		t.Fatalf("published keys %v", ks.public)
	}
	cfg.SigningKeysPrevious = []string{cur} // the same key twice
	if _, err := buildKeys(cfg, db, discardLogger(), nil); err == nil {
		t.Fatal("accepted the signing key as its own predecessor")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// JWT_SECRET_PREVIOUS: tokens made under the old secret verify after a
// rotation, new ones are made under the new secret, and once the old secret
// is dropped its tokens stop verifying.
func TestHMACSecretRotation(t *testing.T) {
	dir := t.TempDir()
	oldSecret, newSecret := strings.Repeat("o", 32), strings.Repeat("n", 32)
	env := map[string]string{"DATABASE_URL": filepath.Join(dir, "o.db"), "JWT_SECRET": oldSecret}
	keysFor := func() *keySet {
		t.Helper()
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		db, err := openStore(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		ks, err := buildKeys(cfg, db, discardLogger(), auth.NewRevocations(nil))
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	now := time.Now()
	before := keysFor()
	old, _, err := before.tokens.Access("42", "c", auth.Mint{}, now)
	if err != nil {
		t.Fatal(err)
	}
	env["JWT_SECRET"], env["JWT_SECRET_PREVIOUS"] = newSecret, oldSecret
	during := keysFor()
	if _, err := during.tokens.Verify(old, now); err != nil {
		t.Fatalf("a token of the previous secret is refused during the rotation: %v", err)
	}
	fresh, _, _ := during.tokens.Access("42", "c", auth.Mint{}, now)
	if during.tokens.Signer.Key().ID == before.tokens.Signer.Key().ID {
		t.Fatal("still signing with the previous secret")
	}
	delete(env, "JWT_SECRET_PREVIOUS")
	after := keysFor()
	if _, err := after.tokens.Verify(old, now); err == nil {
		t.Fatal("a token of a retired secret still verifies")
	}
	if _, err := after.tokens.Verify(fresh, now); err != nil {
		t.Fatalf("a token of the current secret is refused: %v", err)
	}
}

// The keys derived from JWT_SECRET are those of earlier releases: a change
// would sign everyone out (cookie key), refuse the DPoP nonces other
// instances hand out, and rename the HMAC key's kid.
func TestDerivedKeysUnchanged(t *testing.T) {
	env := map[string]string{"DATABASE_URL": filepath.Join(t.TempDir(), "o.db"), "JWT_SECRET": strings.Repeat("s", 32), "DPOP_NONCE": "true"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ks, err := buildKeys(cfg, nil, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"cookie key", hex.EncodeToString(ks.cookieKey), "4a87747c2deee4252388a47a9bdf43743c5ea32aeb581da67b0a9fed97ca6c56"},
		{"DPoP nonce key", hex.EncodeToString(ks.tokens.NonceKey), "ba939afa636a9e89c94f2b5afa00667f3b147748ccb94ee143366f8e18f5ce49"},
		{"kid", ks.tokens.Signer.Key().ID, "hs-qNVD39S0N6j-"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s; want %s", c.what, c.got, c.want)
		}
	}
}

// A secret set where its path belongs (the PEM text in SIGNING_KEY, the
// secret itself in JWT_SECRET_FILE) is refused in one line that does not
// echo it: the line goes to stderr, hence to the journal and CI logs.
func TestRunSecretInPlaceOfPath(t *testing.T) {
	pemFile := filepath.Join(t.TempDir(), "k.pem")
	if err := keysCmd(nil, nil, []string{"generate", "--alg", "EdDSA", "--out", pemFile}, nil, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	pemText, _ := os.ReadFile(pemFile)
	const secret, dbURL = "9f3c1a7e5b2d4c6a8e0f1b3d5c7a9e2f", "postgres://oauth2:S3cretPassw0rd@db.internal/oauth"
	for _, tc := range []struct {
		name, value string
		more        []string
	}{
		{"SIGNING_KEY", string(pemText), nil},
		{"SIGNING_KEYS_PREVIOUS", string(pemText), []string{"SIGNING_KEY", pemFile}},
		{"JWT_SECRET_FILE", secret, []string{"JWT_SECRET", ""}},
		{"DATABASE_URL_FILE", dbURL, []string{"DATABASE_URL", ""}},
	} {
		env := testEnv(t, append([]string{tc.name, tc.value, "PORT", strconv.Itoa(freePort(t)), "LISTEN_ADDR", "127.0.0.1"}, tc.more...)...)
		// A deadline only so that a server started by mistake ends.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, errb bytes.Buffer
		err := run(ctx, nil, envOf(env), strings.NewReader(""), &out, &errb)
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), tc.name+": ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s set to a secret: %.300q; want one line naming %s", tc.name, err, tc.name)
			continue
		}
		for _, s := range []string{"PRIVATE KEY", strings.Split(string(pemText), "\n")[1], secret, "S3cretPassw0rd"} {
			if strings.Contains(err.Error()+out.String()+errb.String(), s) {
				t.Errorf("%s set to a secret: %.300q (output %.300q) holds %q", tc.name, err, out.String()+errb.String(), s)
			}
		}
	}
}

// keys.in_use names every key that verifies, the HMAC keys too: a
// JWT_SECRET_PREVIOUS left set shows in the audit log. A SIGNING_KEY other
// than RSA is warned of, once: RS256 is what OpenID Connect relying
// parties must support (OIDC Discovery §3).
func TestServeKeysInUse(t *testing.T) {
	dir := t.TempDir()
	ed := filepath.Join(dir, "ed.pem")
	if err := keysCmd(nil, nil, []string{"generate", "--alg", "EdDSA", "--out", ed}, nil, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	const previous = "previous-secret-0123456789abcdef-xyz"
	env := testEnv(t, "SIGNING_KEY", ed, "JWT_SECRET_PREVIOUS", previous, "LISTEN_ADDR", "127.0.0.1")
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	logs := serveOnce(t, cfg)
	out, _, err := runCmd(t, env, "", "audit", "list", "--action", auth.ActKeysInUse)
	var ev store.Event
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil {
		t.Fatalf("audit list = %q, %v", out, err)
	}
	edKey, _ := loadKey("", ed, false)
	want := token.NewHMACKey([]byte(testJWTSecret)).ID + " " + token.NewHMACKey([]byte(previous)).ID + " " + edKey.ID
	if ev.Detail["verifying"] != want || ev.Detail["signing"] != edKey.ID {
		t.Errorf("keys.in_use detail %v; want verifying %q", ev.Detail, want)
	}
	if n := strings.Count(logs, "RS256 is the one algorithm"); n != 1 {
		t.Errorf("with an EdDSA key, %d warnings of RS256; want 1:\n%s", n, logs)
	}
	// An RSA key: no warning.
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	cfg.SigningKey = writePEM(t, dir, "rsa.pem", "PRIVATE KEY", der, 0o600)
	var buf bytes.Buffer
	if _, err := buildKeys(cfg, nil, slog.New(slog.NewJSONHandler(&buf, nil)), nil); err != nil || buf.Len() > 0 {
		t.Errorf("with an RSA key: %v, logged %q; want nothing", err, buf.String())
	}
}

// In debug mode without JWT_SECRET, the key that signs access tokens is
// kept next to the SQLite file: one that is a link (to a file anyone can
// read, say) or that others may read is refused, not trusted; the one it
// writes itself is taken again.
func TestDebugSecretOnlyFromItsOwnFile(t *testing.T) {
	known := "attacker-chosen-attacker-chosen-0123456789abcdef"
	planted := filepath.Join(t.TempDir(), "planted")
	if err := os.WriteFile(planted, []byte(known+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(string) error{
		"a file others may read": func(p string) error { return os.WriteFile(p, []byte(known+"\n"), 0o644) },
		"a link":                 func(p string) error { return os.Symlink(planted, p) },
		"none":                   func(string) error { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := &config{DatabaseURL: filepath.Join(t.TempDir(), "o.db")}
			db, err := openStore(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := plant(filepath.Join(filepath.Dir(cfg.DatabaseURL), ".oauth2-api-jwt-secret")); err != nil {
				t.Fatal(err)
			}
			got, err := debugSecret(db, cfg.DatabaseURL, discardLogger())
			if name != "none" {
				if err == nil || string(got) == known {
					t.Fatalf("debug key taken from %s: %q, %v", name, got, err)
				}
				return
			}
			again, err2 := debugSecret(db, cfg.DatabaseURL, discardLogger())
			if err != nil || err2 != nil || len(got) < minSecret || string(again) != string(got) {
				t.Fatalf("a generated key: %v, %v; want the same key twice", err, err2)
			}
		})
	}
}
