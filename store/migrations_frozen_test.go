package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// shipped pins each migration file as it shipped: a database applies a
// version once and records only its name, so a file changed after that
// changes nothing on the databases that applied it, and the same version
// then means two schemas (an edit of 0006 once left databases with a
// NOT NULL column the code no longer wrote). A change of schema is a new
// migration; when one ships, add its files' digests here. Never change a
// digest that is here.
var shipped = map[string]string{
	"migrations/postgres/0001_users.sql":                "e62c151f7b2347f3",
	"migrations/postgres/0002_oauth.sql":                "2b3adab2d07e386f",
	"migrations/postgres/0003_revocation_ms.sql":        "1d989a13393d0a36",
	"migrations/postgres/0004_sessions.sql":             "61e4493a2c5af90e",
	"migrations/postgres/0005_uri_lists.sql":            "dd02ce38a6636590",
	"migrations/postgres/0006_purge.sql":                "a55b9df95fbba497",
	"migrations/postgres/0007_email_verification.sql":   "43ec54204a0e1936",
	"migrations/postgres/0008_backchannel.sql":          "72af9e88c2020eb6",
	"migrations/postgres/0009_dpop_par.sql":             "172bc03ec1126958",
	"migrations/postgres/0010_registration.sql":         "10b97afa565ae746",
	"migrations/postgres/0011_device.sql":               "b34e70f706c2b790",
	"migrations/postgres/0012_resources.sql":            "423c4bdd0638b3a5",
	"migrations/postgres/0013_audit.sql":                "6c67ce3fac539d03",
	"migrations/postgres/0014_cap_locks.sql":            "eff458ef9f879cd7",
	"migrations/postgres/0015_admins_lock.sql":          "6bad37810beebd12",
	"migrations/postgres/0016_consent_resource.sql":     "d61f0bc1c78e9cdc",
	"migrations/postgres/0017_session_prev_hash.sql":    "0dae08d51c578157",
	"migrations/postgres/0018_device_client.sql":        "faa7024472d85a29",
	"migrations/postgres/0019_device_address.sql":       "96b2e80433562a4b",
	"migrations/postgres/0020_family_sid.sql":           "757bcf10bddfa783",
	"migrations/postgres/0021_delete_indexes.sql":       "1ed0593e3a562c45",
	"migrations/postgres/0022_refresh_bound.sql":        "30108bd9b9a75c3e",
	"migrations/postgres/0023_family_cap.sql":           "ce2c35138fe93147",
	"migrations/postgres/0024_client_resource.sql":      "6cf185f5a4f92910",
	"migrations/postgres/0025_username_ascii_lower.sql": "c0eab48224c1cb05",
	"migrations/sqlite/0001_users.sql":                  "130273be3682a18d",
	"migrations/sqlite/0002_oauth.sql":                  "5a15aabb793b48ad",
	"migrations/sqlite/0003_revocation_ms.sql":          "1d989a13393d0a36",
	"migrations/sqlite/0004_sessions.sql":               "224c6da4085f3387",
	"migrations/sqlite/0005_uri_lists.sql":              "6b1d9c8484ffb0b0",
	"migrations/sqlite/0006_purge.sql":                  "a55b9df95fbba497",
	"migrations/sqlite/0007_email_verification.sql":     "4a75f572ff6f87c2",
	"migrations/sqlite/0008_backchannel.sql":            "72af9e88c2020eb6",
	"migrations/sqlite/0009_dpop_par.sql":               "172bc03ec1126958",
	"migrations/sqlite/0010_registration.sql":           "10b97afa565ae746",
	"migrations/sqlite/0011_device.sql":                 "b8478b5b4238b48d",
	"migrations/sqlite/0012_resources.sql":              "423c4bdd0638b3a5",
	"migrations/sqlite/0013_audit.sql":                  "6c67ce3fac539d03",
	"migrations/sqlite/0014_cap_locks.sql":              "eff458ef9f879cd7",
	"migrations/sqlite/0015_admins_lock.sql":            "6bad37810beebd12",
	"migrations/sqlite/0016_consent_resource.sql":       "5511b2f4e8dc9c9f",
	"migrations/sqlite/0017_session_prev_hash.sql":      "0dae08d51c578157",
	"migrations/sqlite/0018_device_client.sql":          "faa7024472d85a29",
	"migrations/sqlite/0019_device_address.sql":         "96b2e80433562a4b",
	"migrations/sqlite/0020_family_sid.sql":             "757bcf10bddfa783",
	"migrations/sqlite/0021_delete_indexes.sql":         "1ed0593e3a562c45",
	"migrations/sqlite/0022_refresh_bound.sql":          "cd171d589e556a53",
	"migrations/sqlite/0023_family_cap.sql":             "ce2c35138fe93147",
	"migrations/sqlite/0024_client_resource.sql":        "6cf185f5a4f92910",
	"migrations/sqlite/0025_username_ascii_lower.sql":   "feff687347259f79",
	"../mysql/migrations/0001_users.sql":                "9303a48aaaecea5e",
	"../mysql/migrations/0002_oauth.sql":                "2045d9f15eb9d78a",
	"../mysql/migrations/0003_revocation_ms.sql":        "52dff8481900f0a9",
	"../mysql/migrations/0004_sessions.sql":             "47efd4ab3dd4b15d",
	"../mysql/migrations/0005_uri_lists.sql":            "dec36c8c7de3a54e",
	"../mysql/migrations/0006_purge.sql":                "4561dc88e0384775",
	"../mysql/migrations/0007_email_verification.sql":   "4f561f47afa07cae",
	"../mysql/migrations/0008_backchannel.sql":          "3871742a954377cf",
	"../mysql/migrations/0009_dpop_par.sql":             "d0870e3946dbebdf",
	"../mysql/migrations/0010_registration.sql":         "43686c5e388c44a5",
	"../mysql/migrations/0011_device.sql":               "d9ee2ec087b94da8",
	"../mysql/migrations/0012_resources.sql":            "4a008ccf8ff51f5a",
	"../mysql/migrations/0013_audit.sql":                "31c06d83060463d2",
	"../mysql/migrations/0014_cap_locks.sql":            "b244131d5d25efac",
	"../mysql/migrations/0015_admins_lock.sql":          "0d5d3267ac9938e9",
	"../mysql/migrations/0016_consent_resource.sql":     "c39aa8c27c4c9ff1",
	"../mysql/migrations/0017_session_prev_hash.sql":    "65cbc7123a014624",
	"../mysql/migrations/0018_device_client.sql":        "f9feb613f553485e",
	"../mysql/migrations/0019_device_address.sql":       "97a5fb937321b894",
	"../mysql/migrations/0020_family_sid.sql":           "5adc87aa57bf611d",
	"../mysql/migrations/0021_delete_indexes.sql":       "c62b9f00f36a4f2b",
	"../mysql/migrations/0022_refresh_bound.sql":        "ab863b1701b7e23e",
	"../mysql/migrations/0023_family_cap.sql":           "8ccf551470609549",
	"../mysql/migrations/0024_client_resource.sql":      "f0458af4e23b326a",
	"../mysql/migrations/0025_username_ascii_lower.sql": "cff8f276f483872b",
	"migrations/postgres/0026_refresh_unspent.sql":      "1526f7e927a74f70",
	"migrations/sqlite/0026_refresh_unspent.sql":        "1526f7e927a74f70",
	"../mysql/migrations/0026_refresh_unspent.sql":      "141c4508d39bf740",
	"migrations/postgres/0027_deleted_users.sql":        "7a5746c6cb4860a6",
	"migrations/sqlite/0027_deleted_users.sql":          "7a5746c6cb4860a6",
	"../mysql/migrations/0027_deleted_users.sql":        "e393f5a7c97c841e",
	"migrations/postgres/0028_purge_indexes.sql":        "889a4d89620692b7",
	"migrations/sqlite/0028_purge_indexes.sql":          "eb876bc5fb53060c",
	"../mysql/migrations/0028_purge_indexes.sql":        "ec1ab340554a2b95",
}

func TestShippedMigrationsUnchanged(t *testing.T) {
	var files []string
	for _, dir := range []string{"migrations/postgres", "migrations/sqlite", "../mysql/migrations"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.sql"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no migrations in %s: %v", dir, err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		want, ok := shipped[filepath.ToSlash(f)]
		if !ok {
			t.Errorf("%s is not in shipped: add its digest once it ships", f)
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:8]) != want {
			t.Errorf("%s changed after it shipped: write a new migration instead", f)
		}
	}
	if len(files) != len(shipped) {
		t.Errorf("%d migration files, %d shipped: a shipped one is gone", len(files), len(shipped))
	}
}
