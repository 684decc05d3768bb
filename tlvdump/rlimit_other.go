//go:build !unix

package tlvdump

func fileLimit() int { return 0 }
