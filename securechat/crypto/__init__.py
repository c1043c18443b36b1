"""
The cryptographic core: keys, certificate checks, the signed Diffie-Hellman
handshake and the AEAD record channel.

Pure code: no Twisted, no sockets, no clocks; time and randomness are passed in.
"""
