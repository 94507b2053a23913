package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/simulators"
)

// demoCameraFaults are the faults of the demo's first cameras; the rest
// stream normally.
var demoCameraFaults = []simulators.CameraFault{
	simulators.FaultOffline, simulators.FaultWrongAuth, simulators.FaultStall,
	simulators.FaultLowFPS, simulators.FaultFrozen, simulators.FaultAuth,
}

// startDemoCameras serves n simulated cameras on loopback and returns them
// as camera devices of grid, credentials split out of their URLs.
func startDemoCameras(ctx context.Context, logger *slog.Logger, n int, grid string) (*simulators.CameraFarm, []devices.Device, error) {
	farm := &simulators.CameraFarm{Logger: logger}
	for i := range n {
		c := simulators.Camera{Path: fmt.Sprintf("cam%03d", i+1)}
		if i < len(demoCameraFaults) {
			c.Fault = demoCameraFaults[i]
		}
		farm.Cameras = append(farm.Cameras, c)
	}
	if err := farm.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("demo cameras: %w", err)
	}
	devs, err := farm.Devices("camera-", grid, func(c simulators.Camera) string {
		if c.Fault == "" {
			return "Demo camera " + c.Path
		}
		return "Demo camera " + c.Path + " (" + string(c.Fault) + ")"
	})
	if err != nil {
		farm.Close()
		return nil, nil, err
	}
	return farm, devs, nil
}
