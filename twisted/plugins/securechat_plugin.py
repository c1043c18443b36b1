"""
The C{twistd securechat} plugin: the relay's options and service live in
L{securechat.tap}.
"""

from twisted.application.service import ServiceMaker

securechat = ServiceMaker(
    "securechat",
    "securechat.tap",
    "An end-to-end encrypted chat relay (see --help)",
    "securechat",
)
