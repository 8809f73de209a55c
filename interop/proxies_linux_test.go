package interop

import (
	"os"
	"syscall"
)

// nobody is the account apache2 runs as when the tests run as root.
const nobody = 65534

// unprivileged is dieWithParent, and when the test runs as root, the
// account nobody: apache2 then runs without any privilege, as it would as
// a developer.
func unprivileged() *syscall.SysProcAttr {
	a := dieWithParent()
	if os.Geteuid() == 0 {
		a.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	return a
}
