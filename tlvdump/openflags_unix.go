//go:build unix

package tlvdump

import "syscall"

// reopenFlags: a WAV file is opened again without following a symlink put in
// its place, and without waiting on a FIFO (O_NONBLOCK).
const reopenFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
