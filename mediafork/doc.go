// Package mediafork is the domain of the daemon: a Fork taps one call's audio,
// the Registry holds the live forks, the Policy decides where each goes, and
// each of a fork's outputs speaks one output protocol (protocol.go): the
// datagram protocols (TLV, RTP) — a Packetizer turns mod_audio_fork PCM into
// frames and the protocol's Framer into packets, fanned out over UDP through
// the reader's batch — and the stream protocols (twilio, audiofork) — the
// media path encodes each frame into a slot of the output's bounded queue,
// which a writer goroutine per connection drains into a WebSocket it dials
// through the StreamDialer port — with the DTMF digits the switch reports
// placed on each output's media clock.
//
// It knows nothing of WebSockets, ESL or config files: web hands a Fork its PCM,
// the control plane starts and stops forks, conf fills in the Params, and
// transport packages (transport/udp, transport/gso, transport/wsout) carry
// what it sends.
package mediafork
