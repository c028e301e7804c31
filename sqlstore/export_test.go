package sqlstore

import "context"

// SetMoveHook makes f run in each transaction of the rollup's move, after
// its INSERT, for tests of what happens meanwhile.
func SetMoveHook(s *Store, f func(context.Context)) { s.shared.moveHook = f }

// SetDeleteHook makes f run between the first pass of a deletion of
// telemetry rows and its transaction.
func SetDeleteHook(s *Store, f func(context.Context)) { s.shared.deleteHook = f }
