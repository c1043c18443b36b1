"""
The operator's tool, C{securechat-admin} (L{securechat.admin.cli}).
"""
