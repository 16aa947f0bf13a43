"""Stops like a service: SIGTERM (systemd, ``docker stop``, Kubernetes) and SIGHUP (a
closed terminal) end a long-running command the way Ctrl-C does: it stops taking input,
finishes or leaves unacknowledged what is in flight (never half-written), and prints its
report. SIGTERM does so whatever disposition the process inherited (even ignored); an
inherited ignored SIGINT or SIGHUP stays ignored, as a script's background job or
``nohup`` asks."""
import signal
import threading

__all__ = ["Stopped", "stop_on"]


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by a service manager's signal: the same path as Ctrl-C
    (every ``except KeyboardInterrupt`` takes it), told apart where the exit status
    differs (a stream stopped by Ctrl-C exits 130; by its service manager, 0 or 1)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on(*signums):
    """From now on, Ctrl-C (unless it was ignored when the process started) and each of
    ``signums`` stop this process cleanly (once: a second signal while it stops is ignored,
    so that its report is not cut short). Only the main thread can take signals; elsewhere
    (a command run in a test's thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signums = (signal.SIGINT, *signums)
    signums = tuple(s for s in signums  # nohup's wish
                    if s != signal.SIGHUP or signal.getsignal(s) is not signal.SIG_IGN)

    def stop(signum, frame):
        for taken in signums:
            signal.signal(taken, signal.SIG_IGN)
        raise Stopped(signum) if signum != signal.SIGINT else KeyboardInterrupt

    for signum in signums:
        signal.signal(signum, stop)
