"""
C{python -m securechat.admin}: the operator's tool.
"""

from securechat.admin.cli import console

console()
