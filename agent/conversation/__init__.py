"""Pure conversation cores: each mode's rules as event -> actions, with no I/O (docs/architecture.md)."""
