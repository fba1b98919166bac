"""Process-level duties of the daemon: privileges, rlimits, detaching, the pid file.

These run before the event loop exists (forking with a running loop or gRPC threads is unsafe).
Messages are supervisord's, since operators grep for them.
"""

from __future__ import annotations

import os
import resource

from .mainlog import BootLog, MainLog


class StartupError(Exception):
    """Startup cannot go on; printed as supervisord's usage error (exit 2)."""


def drop_privileges(user: str | None, boot: BootLog) -> None:
    """Become [supervisord] user=, as supervisord does at startup."""
    import grp
    import pwd

    if user is None:
        if os.getuid() == 0:
            boot.critical(
                "Supervisor is running as root.  Privileges were not dropped because no user is "
                "specified in the config file.  If you intend to run as root, you can set "
                "user=root in the config file to avoid this message.")
        return
    try:
        record = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        kind = "uid" if user.isdigit() else "username"
        raise StartupError(f"Can't find {kind} {user!r}") from None
    if os.getuid() == record.pw_uid:
        boot.info(f"Set uid to user {user} succeeded")
        return
    if os.getuid() != 0:
        raise StartupError("Can't drop privilege as nonroot user")
    groups = [record.pw_gid] + [g.gr_gid for g in grp.getgrall() if record.pw_name in g.gr_mem]
    try:
        os.setgroups(groups)
    except OSError:
        raise StartupError("Could not set groups of effective user") from None
    try:
        os.setgid(record.pw_gid)
    except OSError:
        raise StartupError("Could not set group id of effective user") from None
    os.setuid(record.pw_uid)
    boot.info(f"Set uid to user {user} succeeded")


_LIMITS = (
    ("RLIMIT_NOFILE", resource.RLIMIT_NOFILE, "minfds",
     "The minimum number of file descriptors required to run this process is {min} as per the "
     '"minfds" command-line argument or config file setting. The current environment will only '
     "allow you to open {hard} file descriptors.  Either raise the number of usable file "
     "descriptors in your environment (see README.rst) or lower the minfds setting in the config "
     "file to allow the process to start."),
    ("RLIMIT_NPROC", resource.RLIMIT_NPROC, "minprocs",
     "The minimum number of available processes required to run this program is {min} as per "
     'the "minprocs" command-line argument or config file setting. The current environment will '
     "only allow you to open {hard} processes.  Either raise the number of usable processes in "
     "your environment (see README.rst) or lower the minprocs setting in the config file to "
     "allow the program to start."),
)


def raise_rlimits(minfds: int, minprocs: int, boot: BootLog) -> None:
    wanted = {"minfds": minfds, "minprocs": minprocs}
    for name, res, key, message in _LIMITS:
        minimum = wanted[key]
        soft, hard = resource.getrlimit(res)
        if soft == resource.RLIM_INFINITY or soft >= minimum:
            continue
        if hard != resource.RLIM_INFINITY and hard < minimum:
            hard = minimum  # only root may raise the hard limit; otherwise setrlimit fails
        try:
            resource.setrlimit(res, (minimum, hard))
        except (OSError, ValueError):
            raise StartupError(message.format(min=minimum, hard=hard)) from None
        boot.info(f"Increased {name} limit to {minimum}")


def daemonize(directory: str | None, umask: int, log: MainLog) -> None:
    """Detach: fork (the parent exits), new session, optional chdir, stdio to /dev/null."""
    if os.fork() != 0:
        os._exit(0)
    log.info("daemonizing the supervisord process")
    if directory:
        try:
            os.chdir(directory)
        except OSError as exc:
            log.critical(f"can't chdir into {directory!r}: {exc}")
        else:
            log.info(f"set current directory: {directory!r}")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.setsid()
    os.umask(umask)


def write_pidfile(path: str, log: MainLog) -> bool:
    pid = os.getpid()
    try:
        with open(path, "w") as f:
            f.write(f"{pid}\n")
    except OSError:
        log.critical(f"could not write pidfile {path}")
        return False
    log.info(f"supervisord started with pid {pid}")
    return True


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
