"""
securechat: a self-hosted, end-to-end encrypted chat relay on Twisted.

The protocol core lives in L{securechat.wire} (framing and message codecs) and
L{securechat.crypto} (keys, certificates, the handshake and the record
channel); neither imports Twisted nor does any IO.
"""

__version__ = "0.1.0"
