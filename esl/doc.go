// Package esl is mediafork's side of the FreeSWITCH Event Socket: the inbound
// client (one connection per switch, reconnecting), the outbound server for the
// dialplan `socket` application, the commands mediafork sends, and the event
// model.
//
// The protocol is spoken by percipia/eslgo (vendored, with the small patches
// listed in third_party/eslgo/PATCHES.md), directly on the FreeSWITCH socket.
// Its sharp edges stay in this package: eslgo reads every message through
// Conn.read, which checks its framing with ReadMessage (a garbage header, an
// unknown Content-Type or a huge body would otherwise end or crash eslgo's
// reader) and takes events off the wire itself, in order, into a bounded queue
// (eslgo hands each event to its own goroutine); commands are serialized per
// connection (concurrent eslgo calls can take each other's replies); a command
// that times out closes the connection, so that a late reply cannot answer the
// next command.
package esl
