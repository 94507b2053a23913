// Package simulation is the acceptance test of the case loop: a simulated
// month of a city, driven through cases.Service with a fake clock, whose
// evaluation (computed by ClickHouse from the stored events) must equal the
// ground truth the test computes from its own script.
package simulation
