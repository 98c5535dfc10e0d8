"""`modbot demo` and the throwaway Synapse it (and the end-to-end tests) run on; only the CLI
and the tests import this package."""
