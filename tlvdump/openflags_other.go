//go:build !unix

package tlvdump

// reopenFlags: the SameFile check after opening is the guard here.
const reopenFlags = 0
