//go:build unix

package tlvdump

import "syscall"

// fileLimit is the process's soft limit on open descriptors, or 0.
func fileLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 0
	}
	return int(l.Cur)
}
