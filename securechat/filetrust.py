# -*- test-case-name: tests.test_datadir -*-
"""
Whether the data directory's files can be trusted, checked the way OpenSSH
checks key files (C{StrictModes}) before anything in them is believed.

The rules (L{check_directory}, L{check_file}):

  - the data directory and its subdirectories belong to the user running the
    command or the relay, or to root, and nobody else can write in them;
  - every file belongs to that user or to root, and nobody else can write it
    (a group-writable C{users.json} would let that group register users);
  - the private keys (C{ca/ca.key}, C{server/server.key}) are readable by
    their owner only, unless the operator says otherwise
    (C{--allow-readable-keys});
  - a file may be a symbolic link only to somewhere inside the directory.

Root may run the tools on a directory owned by anyone (C{sudo
securechat-admin} on the service user's directory); the files root writes
there are then given to the directory's owner (L{new_file_owner}).

Every refusal is one line naming the file, what is wrong and the command
that fixes it.
"""

from __future__ import annotations

import os
import pwd
import stat


class UnsafeFile(Exception):
    """
    A file or directory of the data directory is not safe to trust; the
    message names it, says why and how to fix it.
    """


def user_name(uid: int) -> str:
    """
    The login name of C{uid}, or the number if it has none.
    """
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _owner_ok(st: os.stat_result, uid: int) -> bool:
    return uid == 0 or st.st_uid in (uid, 0)


def _owner_problem(path: str, st: os.stat_result, uid: int, directory: bool) -> str:
    owner, me = user_name(st.st_uid), user_name(uid)
    recursive = "-R " if directory else ""
    return (f"{path} is owned by {owner}, not by {me} (who runs this) or root: "
            f"chown {recursive}{me} {path} (or run this as {owner})")


def check_directory(path: str, uid: int) -> None:
    """
    Refuse a directory that another user owns or can write in, or that the
    running user cannot enter.

    @param uid: the effective user id running the command or the relay.
    @raise UnsafeFile: saying what is wrong and how to fix it.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except PermissionError:
        raise UnsafeFile(f"permission denied on {path} (a directory above it cannot be entered "
                         f"by {user_name(uid)}, who runs this)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFile(f"{path} is not a directory")
    if not _owner_ok(st, uid):
        raise UnsafeFile(_owner_problem(path, st, uid, directory=True))
    if st.st_mode & 0o022:
        raise UnsafeFile(f"{path} is writable by {_who(st.st_mode & 0o022)} (mode {st.st_mode & 0o777:04o}): "
                         f"chmod go-w {path}")
    if uid != 0 and not os.access(path, os.R_OK | os.X_OK):
        raise UnsafeFile(permission_denied(path, uid, st))


def permission_denied(path: str, uid: int, st: os.stat_result | None = None) -> str:
    """
    The one line for a file or directory the running user may not read:
    who owns it, its mode, and the C{chown} that lets this user in.
    """
    if st is None:
        try:
            st = os.stat(path)
        except OSError:
            return f"permission denied on {path} (running as {user_name(uid)})"
    return (f"permission denied on {path} (owned by {user_name(st.st_uid)}, mode "
            f"{st.st_mode & 0o777:04o}), and this runs as {user_name(uid)}: "
            f"chown -R {user_name(uid)}: on the data directory, or run this as {user_name(st.st_uid)}")


def _who(bits: int) -> str:
    group, others = bool(bits & 0o070), bool(bits & 0o007)
    return "group and others" if group and others else "its group" if group else "others"


def check_link(path: str, root: str) -> None:
    """
    Refuse C{path} if it is a symbolic link that leads out of C{root}.
    """
    try:
        if not os.path.islink(path):
            return
    except OSError:
        return
    target = os.path.realpath(path)
    real_root = os.path.realpath(root)
    if os.path.commonpath([target, real_root]) != real_root:
        raise UnsafeFile(f"{path} is a symbolic link out of the data directory (to {target}): "
                         f"replace it with the file itself (cp --remove-destination {target} {path})")


def check_file(path: str, st: os.stat_result, uid: int, secret: bool,
               allow_readable: bool = False) -> None:
    """
    Refuse a file (already opened: C{st} is its C{fstat}) that another user
    owns or can write, or a private key others can read.

    @param secret: whether the file holds a private key.
    @param allow_readable: accept a private key that its group or others
        can read (the operator said so).
    @raise UnsafeFile: saying what is wrong and how to fix it.
    """
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{path} is not a regular file")
    if not _owner_ok(st, uid):
        raise UnsafeFile(_owner_problem(path, st, uid, directory=False))
    mode = st.st_mode & 0o777
    if mode & 0o022:
        raise UnsafeFile(f"{path} is writable by {_who(mode & 0o022)} (mode {mode:04o}): "
                         f"chmod go-w {path}")
    if secret and mode & 0o077 and not allow_readable:
        raise UnsafeFile(f"{path} is a private key readable by {_who(mode & 0o077)} (mode {mode:04o}): "
                         f"chmod 600 {path} (or accept it with --allow-readable-keys)")


def verify_tree(root: str, subdirectories: list[str], files: list[str], secrets: set[str],
                uid: int, allow_readable: bool = False) -> None:
    """
    Check a whole data directory: C{root} and its C{subdirectories}
    (L{check_directory}, and no link out of C{root}), and every one of
    C{files} that exists (L{check_file}; those in C{secrets} are private
    keys).

    @raise UnsafeFile: for the first problem found.
    """
    check_directory(root, uid)
    for directory in subdirectories:
        check_link(directory, root)
        check_directory(directory, uid)
    for path in files:
        check_link(path, root)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except PermissionError:
            raise UnsafeFile(permission_denied(path, uid)) from None
        check_file(path, st, uid, path in secrets, allow_readable)


def new_file_owner(directory: str) -> tuple[int, int] | None:
    """
    Whom files written into C{directory} should belong to: its owner and
    group when root writes into a directory owned by someone else (so the
    service user can still read them), else C{None} (leave them be).
    """
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if st.st_uid == 0:
        return None
    return st.st_uid, st.st_gid
