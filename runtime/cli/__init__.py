"""The command-line layer of the runtime: ``nin-infer``, ``nin-serve`` and the helpers every nin-edge command shares.

Imported only by command-line modules, never by the runtime library itself.
"""
