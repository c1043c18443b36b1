"""
The relay: sessions, presence, chat requests, the queue per user, limits,
the user directory, metrics, and the service tree C{twistd securechat} runs.
"""
