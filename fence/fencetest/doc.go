// Package fencetest is the conformance suite for fence.FloorStore
// implementations: the behaviour a Guard relies on, checked the same way
// for every store.
//
//	func TestConformance(t *testing.T) {
//		fencetest.TestFloorStore(t, func(t *testing.T) fence.FloorStore {
//			return myStore(t)
//		})
//	}
package fencetest
