"""Processes and limits of this machine as tests look at them: children of a
process, command lines carrying a secret, the open-files limit."""
import os
import resource

__all__ = ["child_processes", "command_lines_with", "raise_nofile"]


def _proc_pids():
    return [d for d in os.listdir("/proc") if d.isdigit()]


def child_processes(pid):
    """The child processes of pid as "PID (state)", e.g. a zombie nobody
    reaped: "4242 (Z)"."""
    out = []
    for d in _proc_pids():
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append("%s (%s)" % (d, fields[0]))
    return out


def command_lines_with(secret):
    """(pid, command line) of every process whose argv contains secret."""
    found = []
    for d in _proc_pids():
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if secret.encode() in cmd:
            found.append((int(d), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


def raise_nofile(want):
    """Raises this process's RLIMIT_NOFILE soft limit towards `want` (capped by
    the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target
