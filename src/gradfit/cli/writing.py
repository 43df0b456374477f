"""Output files written whole or not at all, and never over the input.

``replace_file(target, write, what)`` has ``write(path)`` fill a new file beside ``target``
and then moves it over ``target`` (``os.replace``): a full disk or an I/O error leaves the
old ``target`` as it was (it had been truncated and left half-written) and says what
happened. ``check_not_the_input`` refuses an output path that is the data being read.
"""
from __future__ import annotations

import errno
import glob
import os
import secrets
import stat
from typing import Callable

from ..errors import InputError

STDIN = "-"


def os_words(exc: OSError) -> str:
    """What went wrong, in words: ``no space left on the device`` rather than errno 28."""
    known = {errno.ENOSPC: "no space left on the device",
             errno.EDQUOT: "the disk quota is exceeded",
             errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
             errno.EROFS: "the file system is read-only",
             errno.EIO: "an input/output error of the device"}
    return known.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)


def replace_file(target: str, write: Callable[[str], None], what: str = "the output") -> None:
    """``write(path)`` into a new file in ``target``'s folder, then moved over ``target``;
    on any error the new file is removed, ``target`` is unchanged and the error is one
    ``InputError`` saying what happened. A ``target`` that is not a regular file (a device
    such as /dev/null, a FIFO) is written directly, and so is one in a folder where no new
    file can be made (a writable file in a read-only folder)."""
    path = os.path.realpath(target)          # a link: its file is replaced, not the link
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        _direct(target, write, what)
        return
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.{secrets.token_hex(4)}.part{ext}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask's mode
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and mode is not None:
            _direct(target, write, what)      # no new file here: the old way, in place
            return
        raise _cannot(what, target, exc) from None
    os.close(fd)
    try:
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))          # the replaced file's permissions
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise _cannot(what, target, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def write_text_file(target: str, text: str, what: str = "the output") -> None:
    """``text`` (UTF-8) to the file ``target``, whole or not at all (``replace_file``)."""
    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    replace_file(target, write, what)


def _direct(target: str, write: Callable[[str], None], what: str) -> None:
    try:
        write(target)
    except OSError as exc:
        raise _cannot(what, target, exc) from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _cannot(what: str, target: str, exc: OSError) -> InputError:
    kept = " (the file there is left as it was)" if os.path.isfile(target) else ""
    return InputError(f"cannot write {what} {target!r}: {os_words(exc)}{kept}")


def input_files(data: str) -> list[str]:
    """The files a command's data ``data`` reads: the file, a folder's files, a glob's
    matches (nothing for standard input or a name that is no file)."""
    if not data or data == STDIN:
        return []
    if os.path.isdir(data):
        out = []
        for root, _, files in os.walk(data):
            out += [os.path.join(root, f) for f in files]
        return out
    if any(c in data for c in "*?[") and not os.path.exists(data):
        return glob.glob(data, recursive=True)
    return [data] if os.path.exists(data) else []


def check_not_the_input(target: str | None, flag: str, data: str | None) -> None:
    """Refuse an output path that is one of the files the data is read from: ``--out
    data.csv`` on ``data.csv`` had replaced the data with the table of fits, exit 0."""
    if not target or target == STDIN or not data or not os.path.exists(target):
        return
    for source in input_files(str(data)):
        try:
            same = os.path.samefile(target, source)
        except OSError:
            continue
        if same:
            shown = "the input file" if os.path.isfile(data) else f"an input file ({source})"
            raise InputError(f"{flag} {target!r} is {shown}: writing it would overwrite the data",
                             expected=f"another path for {flag}")
