// Package esl is mediafork's side of the FreeSWITCH Event Socket: the inbound
// client (one connection per switch, reconnecting), the outbound server for the
// dialplan `socket` application, the commands mediafork sends, and the event
// model.
//
// The protocol is spoken by percipia/eslgo. Its sharp edges stay in this
// package: a guard between the socket and eslgo checks every message's framing
// (a garbage header, an unknown Content-Type or a huge body would otherwise end
// or crash eslgo's reader) and takes events off the wire itself, in order
// (eslgo hands each event to its own goroutine); commands are serialized per
// connection (concurrent eslgo calls can take each other's replies); a command
// that times out closes the connection, so that a late reply cannot answer the
// next command.
package esl
