"""
C{python -m securechat.client}: the terminal client.
"""

from securechat.client.cli import main

main()
