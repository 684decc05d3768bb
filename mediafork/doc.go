// Package mediafork is the domain of the daemon: a Fork taps one call's audio,
// the Registry holds the live forks, the Packetizer turns mod_audio_fork PCM into
// TLV audio packets, and the Sender fans them out over UDP.
//
// It knows nothing of WebSockets, ESL or config files: web hands a Fork its PCM,
// the control plane starts and stops forks, conf fills in the Params.
package mediafork
