"""The toolkit's foundation: errors, atomic files, reports, model metadata and timing.

Standard library and numpy only, so every other part of nin-edge (and an app) can build on it.
"""
