"""``make bench``: how cheap waiting is, side by side with the alternatives. See ``docs/benchmarks.md``."""
