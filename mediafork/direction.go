package mediafork

import "fmt"

// Direction is which audio of the tapped channel a stream carries.
type Direction uint8

// Directions. Their values are the TLV wire values.
const (
	DirRX    Direction = 1 // the channel's read stream: what FreeSWITCH receives from that endpoint
	DirTX    Direction = 2 // its write stream: what FreeSWITCH sends to it
	DirMixed Direction = 3 // both, summed
)

func (d Direction) String() string {
	switch d {
	case DirRX:
		return "RX"
	case DirTX:
		return "TX"
	case DirMixed:
		return "MIXED"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// EndReason is why a fork ended.
type EndReason uint8

// End reasons. Their values are the TLV wire values.
const (
	EndHangup    EndReason = 1 // hangup or normal close
	EndStopped   EndReason = 2 // stopped on request
	EndMediaLost EndReason = 3 // the media connection dropped without a close
	EndShutdown  EndReason = 4 // mediafork shutting down
)

func (r EndReason) String() string {
	switch r {
	case EndHangup:
		return "hangup"
	case EndStopped:
		return "stopped"
	case EndMediaLost:
		return "media-lost"
	case EndShutdown:
		return "shutdown"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}
