"""modbot: a Matrix application service that keeps known abuse imagery off self-hosted servers."""

__version__ = "0.1.0"
