"""The recipes: each a config dataclass + a pure ``build`` that returns SFT rows (see schema)."""
