"""
The chat client: the core (L{securechat.client.core}), the known-peers pin
store, and the terminal front end.
"""
