"""Restart policies with Docker's back-off, as pure logic (no clock, no processes).

Docker's rules (moby daemon/internal/restartmanager): before each decision the delay doubles,
starting at 100 ms and capped at one minute; a run that lasted 10 s or more resets it to 100 ms.
``always`` restarts on any exit, ``unless-stopped`` unless the container was stopped by hand,
``on-failure[:N]`` on a non-zero exit while fewer than N restarts were made (N = 0: no limit).
A manual stop (docker stop, docker kill with the stop signal) cancels the manager: the container
is never restarted after it, whatever the policy.
"""

from berth.errors import InvalidArgument

__all__ = ["DEFAULT_DELAY", "MAX_DELAY", "RESET_AFTER", "RestartManager", "parse_policy"]

DEFAULT_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0

POLICIES = ("no", "always", "unless-stopped", "on-failure")


class InvalidRestartPolicy(InvalidArgument):
    pass


def parse_policy(text: str) -> tuple[str, int]:
    """``"on-failure:3"`` → ``("on-failure", 3)``; the name alone means no retry limit."""
    name, sep, count = text.partition(":")
    if name == "":
        name = "no"
    if name not in POLICIES:
        raise InvalidRestartPolicy(f"invalid restart policy: {text!r}")
    if not sep:
        return name, 0
    if name != "on-failure":
        raise InvalidRestartPolicy(f"maximum retry count cannot be used with restart policy "
                                   f"{name!r}")
    if not count.isdigit():
        raise InvalidRestartPolicy(f"maximum retry count must be a non-negative integer: "
                                   f"{text!r}")
    return name, int(count)


class RestartManager:
    """Decides, after each exit, whether to restart and after how long."""

    __slots__ = ("canceled", "delay", "max_retries", "policy", "restart_count")

    def __init__(self, policy: str = "no", max_retries: int = 0, restart_count: int = 0) -> None:
        self.policy = policy
        self.max_retries = max_retries
        self.restart_count = restart_count
        self.delay = 0.0
        self.canceled = False

    def cancel(self) -> None:
        """A manual stop: no restart from now on."""
        self.canceled = True

    def should_restart(self, exit_code: int, manually_stopped: bool,
                       ran_for: float) -> float | None:
        """The delay before the next start, or None for "stay stopped"."""
        if self.policy == "no" or self.canceled:
            return None
        if ran_for >= RESET_AFTER:
            self.delay = 0.0
        if self.delay == 0.0:
            self.delay = DEFAULT_DELAY
        elif self.delay < MAX_DELAY:
            self.delay = min(self.delay * 2, MAX_DELAY)
        if self.policy == "always":
            restart = True
        elif self.policy == "unless-stopped":
            restart = not manually_stopped
        else:
            restart = exit_code != 0 and (self.max_retries == 0
                                          or self.restart_count < self.max_retries)
        if not restart:
            return None
        self.restart_count += 1
        return self.delay
