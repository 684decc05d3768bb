// Package gso is the Linux Transport that sends a batch of packets for one
// destination as UDP GSO trains: one sendmsg with UDP_SEGMENT carries up to
// MaxSegments datagrams. On other systems New returns an error and the plain
// transport (transport/udp) serves.
package gso
