"""The test suite's fixture layer is the `tests.support` plugin (see tests/support/__init__.py)."""

pytest_plugins = [
    "tests.support.unit",
    "tests.support.solo",
    "tests.support.emulator",
    "tests.support.settings",
    "tests.support.daemon",
]
