package cluster

import "errors"

// ErrChanged is Versions.Swap's answer when another node set the number
// since it was read.
var ErrChanged = errors.New("cluster: changed by another node")
