//go:build !linux

package sdnotify

// monotonicUsec: systemd is Linux-only; elsewhere there is nobody to tell.
func monotonicUsec() (int64, bool) { return 0, false }
