"""Bundled training configs (TOML); load them with ``drdd_edu.train.load_config("tiny-cpu")``."""
