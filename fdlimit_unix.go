//go:build unix

package main

import "syscall"

// fdLimit returns the process's limit on open descriptors (the soft limit,
// which the Go runtime raises to the hard one at start), or 0 if unknown.
func fdLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 0
	}
	return int(l.Cur)
}
