"""Test support: the fixture plugin (registered by tests/conftest.py) and its builders.

Layers, each overridable by a test folder's conftest.py:
`emulator_options` → `emulator` / `make_emulator` → `settings_factory` → `scripted_user` →
`daemon` (a running daemon against the emulator) or `tests.support.rig.rig` (null audio and a
`ScriptedMic`, for the reliability tests).
"""
