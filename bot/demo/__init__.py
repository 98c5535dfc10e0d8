"""`modbot demo` and the throwaway Synapse it (and the end-to-end tests and benchmarks) run on.

Only bot/cli/, the tests and the benchmarks import this package; the bot itself never does.
"""
