"""
The wire format: length-prefixed frames and the typed messages they carry.

Pure code: no Twisted, no sockets, no clocks.
"""
