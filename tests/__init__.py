"""The test suite: a package, so `tests.support` (the fixture plugin) imports by name."""
